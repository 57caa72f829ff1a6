"""Putting the generator into a model: the rules every backbone follows, in one place.

- ``NoiseGeneratorMixin`` (first base of a backbone's ``PreTrainedModel``): the generator built from the model
  config (``build_noise_generator``, width checked), its own initialisation (never the backbone's generic Linear
  init), and ``add_noise_to_image_features`` — the one entry point where noise enters every backbone.
- ``text_key_mask``: which text positions are keys (never padding or image placeholders; the answer only in
  training with ``condition_on_answer``).
- ``NoiseDraws``: m noise draws per training sample — how the batch and its supervised-token count grow with them.
- ``rows_at_mask`` / ``mask_positions``: a flat ``[N, d]`` list of rows (placeholder order) put at the True rows of a
  ``[B, T]`` mask and taken back, on the device (cumsum / searchsorted): no host read, no data-dependent shape.
- ``find_noise_generator`` / ``capture_noise``: finding the generator in a (wrapped) model and recording its output.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from .config import NoiseGeneratorConfig
from .generator import NoiseGenerator, NoiseOutput, PaddedNoiseOutput

IGNORE_INDEX = -100


def build_noise_generator(
    entry: Optional[Mapping[str, Any]], hidden_size: int, source: str = "config.noise_generator"
) -> Optional[NoiseGenerator]:
    """The generator a model config's ``noise_generator`` entry describes (None without one); its width must be the
    model's ``hidden_size``."""
    if entry is None:
        return None
    config = NoiseGeneratorConfig.from_dict(dict(entry), source=source)
    if config.noise_video or config.noise_deepstack:
        raise ValueError(
            f"{source}: noise_video / noise_deepstack are settings of noise_generator.attach (any transformers VLM); "
            "this backbone noises image tokens only. Set them to false."
        )
    if config.hidden_size != hidden_size:
        raise ValueError(
            f"{source}.hidden_size={config.hidden_size} differs from the language model's hidden size {hidden_size}; "
            "build the generator config for this model (same LLM width)."
        )
    return NoiseGenerator(config)


class NoiseGeneratorMixin:
    """For a backbone's ``PreTrainedModel`` (put it first among the bases); the inner model sets
    ``self.noise_generator = build_noise_generator(...)`` in ``__init__``."""

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # transformers counts a module without direct parameters (the generator keeps its tensors in child Linears)
        # as initialised once its children are, which would leave it with the backbone's generic Linear init: run
        # its own init after the children. Loaded tensors stay untouched (transformers' init guard).
        if isinstance(module, NoiseGenerator) and not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, NoiseGenerator):
            # Under ZeRO-3 transformers calls this inside GatheredParameters(modifier_rank=0) of the missing tensors.
            module.reset_parameters()
            return
        super()._init_weights(module)

    def add_noise_to_image_features(
        self,
        image_features: Sequence[torch.Tensor],
        text_embeds: torch.Tensor,
        key_mask: torch.Tensor,
        noise_mode: Optional[str] = None,
    ) -> list[torch.Tensor]:
        """Where MuNG enters the model: each sample's image tokens (``[n_i, d]`` after the projector/merger; ``n_i``
        may be 0) noised by the generator, attending to that sample's text embeddings (``[B, T, d]``) at ``key_mask``
        (``[B, T]``, see ``text_key_mask``). Without a generator the features pass through unchanged.

        Called even when a batch has no image tokens, so every ZeRO-3 rank gathers the same parameters.
        """
        generator = getattr(self, "noise_generator", None)
        if generator is None:
            return list(image_features)
        return generator(image_features, text_embeds, key_mask, mode=noise_mode).image_embeds

    def add_noise_to_image_rows(
        self,
        image_rows: torch.Tensor,
        image_mask: torch.Tensor,
        text_embeds: torch.Tensor,
        key_mask: torch.Tensor,
        noise_mode: Optional[str] = None,
    ) -> torch.Tensor:
        """``add_noise_to_image_features`` on a padded batch: ``image_rows`` ``[B, N, d]`` whose image tokens are the
        rows where ``image_mask`` (``[B, N]``) is True; returns it with those rows noised, the others unchanged.
        Fixed shapes, no host read (the generator's padded call)."""
        generator = getattr(self, "noise_generator", None)
        if generator is None:
            return image_rows
        return generator(image_rows, text_embeds, key_mask, mode=noise_mode, image_mask=image_mask).image_embeds


def mask_positions(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Indices into ``mask.reshape(-1)`` of its first ``count`` True entries, in order. ``count`` is a host int (a
    shape, e.g. of the features meant for those positions); were there fewer True entries, the rest would point at
    the last position (the caller's own count check reports that)."""
    cumulative = mask.reshape(-1).long().cumsum(0)
    wanted = torch.arange(1, count + 1, device=mask.device)
    return torch.searchsorted(cumulative, wanted).clamp(max=max(cumulative.numel() - 1, 0))


def rows_at_mask(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[*mask.shape, d]``: row k of ``rows`` (``[N, d]``) at the k-th True entry of ``mask`` (row-major), as a
    masked scatter would put it; entries where ``mask`` is False hold some row of ``rows`` (zeros when N = 0)."""
    if rows.shape[0] == 0:  # one zero row, through ``rows``: a text-only training batch keeps its blank image's
        # merger in the autograd graph (a zero gradient), as every data-parallel rank must run the same modules
        rows = torch.cat([rows, rows.new_zeros(1, rows.shape[-1])])
    index = (mask.reshape(-1).long().cumsum(0) - 1).clamp(min=0, max=rows.shape[0] - 1)
    return rows.index_select(0, index).view(*mask.shape, rows.shape[-1])


def text_key_mask(
    attention_mask: Optional[torch.Tensor],
    image_token_mask: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    training: bool = False,
    condition_on_answer: bool = True,
) -> torch.Tensor:
    """Which text positions the generator may attend to, ``[B, T]`` bool.

    Never padding (``attention_mask == 0``) and never image placeholders. Answer positions (``labels != -100``) are
    keys only in training with ``condition_on_answer`` (the paper's training); outside training (a validation loss,
    scoring) or with ``condition_on_answer`` False they are never keys, so the noise cannot depend on the answer it
    is scored on. Without labels the answer cannot be told apart: every non-padding text position is a key (at
    inference that is the prompt alone, as the paper describes).
    """
    keys = ~image_token_mask.bool()
    if attention_mask is not None:
        keys = keys & attention_mask.bool()
    if labels is not None and not (training and condition_on_answer):
        keys = keys & (labels == IGNORE_INDEX)
    return keys


@dataclass(frozen=True)
class NoiseDraws:
    """m noise draws per training sample: each sample is repeated m times (sample-major) inside the model and each
    copy draws its own noise, so the mean token loss over the expanded batch is the mean over the m draws of each
    sample's loss — the Monte-Carlo estimate of the paper's objective. The supervised-token count a caller (the
    Trainer among them) passes as ``num_items_in_batch`` grows m-fold with it, or the loss would be m times the mean.
    """

    m: int = 1

    @classmethod
    def for_call(cls, generator: Optional[NoiseGenerator], training: bool, mode: Optional[str] = None) -> "NoiseDraws":
        """``num_samples`` draws in training when the generator adds noise in this call's ``mode``; 1 otherwise."""
        if generator is None or not training or generator.resolve_mode(mode) == "off":
            return cls(1)
        return cls(generator.config.num_samples)

    def repeat(self, tensor: Optional[torch.Tensor], dim: int = 0) -> Optional[torch.Tensor]:
        """``tensor`` with every sample (along ``dim``) repeated m times; None stays None."""
        if tensor is None or self.m == 1:
            return tensor
        return tensor.repeat_interleave(self.m, dim=dim)

    def repeat_list(self, items: Sequence[Any]) -> list[Any]:
        return [item for item in items for _ in range(self.m)]

    def num_items(self, num_items_in_batch: Any) -> Any:
        """The supervised-token count of the repeated batch (``None``: no count given, the loss is a plain mean)."""
        if num_items_in_batch is None or self.m == 1:
            return num_items_in_batch
        return num_items_in_batch * self.m

    def loss_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` with ``num_items_in_batch`` scaled (a copy; unchanged when absent)."""
        if kwargs.get("num_items_in_batch") is None or self.m == 1:
            return kwargs
        return {**kwargs, "num_items_in_batch": self.num_items(kwargs["num_items_in_batch"])}


def find_noise_generator(model: nn.Module) -> Optional[NoiseGenerator]:
    """The generator inside ``model`` (through peft / DeepSpeed wrappers), or None."""
    for module in model.modules():
        if isinstance(module, NoiseGenerator):
            return module
    return None


def module_name_of(model: nn.Module, target: nn.Module) -> str:
    """The dotted name of ``target`` inside ``model`` (as in ``model.named_modules()``)."""
    for name, module in model.named_modules():
        if module is target:
            return name
    raise ValueError(f"{type(target).__name__} is not part of this {type(model).__name__}.")


@dataclass
class CapturedNoise:
    """The generator outputs seen while the context was open (one per generator call; padded calls as
    ``PaddedNoiseOutput``)."""

    outputs: list[NoiseOutput | PaddedNoiseOutput]

    def last(self) -> NoiseOutput:
        """The last call's output in the list form (one tensor per sample)."""
        if not self.outputs:
            raise RuntimeError("The model ran without calling its noise generator; nothing to visualise.")
        last = self.outputs[-1]
        return last.per_sample() if isinstance(last, PaddedNoiseOutput) else last


@contextlib.contextmanager
def capture_noise(model: nn.Module, mode: str = "mean") -> Iterator[CapturedNoise]:
    """Record every generator call inside the block, forcing noise ``mode`` for those calls."""
    generator: Optional[NoiseGenerator] = find_noise_generator(model)
    if generator is None:
        raise ValueError("This model has no noise generator (its config has no 'noise_generator' entry).")
    captured = CapturedNoise(outputs=[])
    original_forward = generator.forward

    def forward_with_mode(*args, **kwargs):
        kwargs["mode"] = mode
        output = original_forward(*args, **kwargs)
        captured.outputs.append(output)
        return output

    generator.forward = forward_with_mode
    try:
        yield captured
    finally:
        del generator.forward  # back to the class method
