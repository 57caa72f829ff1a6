"""Putting a generator into any transformers VLM without a model class of our own (the generic backbone).

Every image-text-to-text family of transformers (LLaVA, LLaVA-NeXT/OneVision, Qwen2/2.5/3-VL, Gemma 3, PaliGemma,
Idefics3, SmolVLM, InternVL, Mistral 3, ...) embeds the prompt, places the image features at the rows of its image
placeholder token (``config.image_token_id``) and hands ``inputs_embeds`` to the language model that
``get_decoder()`` returns. ``attach`` puts MuNG exactly there:

- a forward pre-hook on the top-level model records what the decoder cannot see: ``input_ids`` (where the image
  rows are: ``generate()`` encodes images before prefill and drops ``pixel_values``, so images are found from the
  placeholder ids), the 2-D ``attention_mask`` (padding; Gemma 3's decoder only gets prepared masks) and ``labels``
  (the answer); a forward hook forgets them when the call ends;
- a forward pre-hook on the decoder noises the image rows of ``inputs_embeds`` (queries) with the generator,
  attending to the same sample's text rows (keys: ``text_key_mask``, never padding nor image/video placeholders,
  the answer only in training with ``condition_on_answer``), through the one entry point
  ``NoiseGenerator.forward`` in its padded form: ``inputs_embeds`` is the padded batch and the placeholder rows its
  image mask, so the hook has fixed shapes and reads nothing back to the host (no sync before prefill). Noise enters at prefill only: a call that continues a filled cache (a decoding
  step) runs the stock model.

The generator is registered as ``model.noise_generator`` (optimisers, ``save_pretrained``, peft ``modules_to_save``
and LoRA on top, and ZeRO-3 see it) and its config is recorded in ``model.config.noise_generator``. Mode ``off``
(``noise_mode`` context, a ``noise_mode=`` call argument, or the config's ``inference_mode``) leaves the decoder
inputs untouched: the stock model bit for bit. Under DeepSpeed ZeRO-3 (the model was loaded partitioned, since the
generator comes after ``from_pretrained``) the new generator is partitioned as well, rank 0's initialisation is what
every rank keeps, and generator weights are loaded into it gathered.

The same hooks serve the peft method (``noise_generator.peft_method``): ``hook`` / ``unhook`` put them on and take
them off, and its ``AdapterAttachment`` takes the generator from the active adapter instead of
``model.noise_generator``.

m noise draws per sample (``num_samples``): the batch layout (pixel tensors, grids, rope positions) is each family's
own, so the batch is not repeated inside the model; ``mean_loss_over_draws`` runs the top-level forward m times and
averages the losses, which is the mean over the m draws of each sample's loss (the ``NoiseDraws`` rule) with
``num_items_in_batch`` left as it is (each draw's loss is already normalised by it).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn

from .config import MODES, NoiseGeneratorConfig
from .generator import NoiseGenerator
from .io import check_generator_fits, load_generator_weights, load_noise_generator_state
from .model import NoiseDraws, find_noise_generator, mask_positions, text_key_mask

ATTACHMENT_ATTR = "_noise_attachment"
GENERATOR_ATTR = "noise_generator"
GENERATOR_PREFIX = GENERATOR_ATTR + "."


def _config_id(config: Any, *names: str) -> Optional[int]:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


@dataclass
class _CallInputs:
    """What the top-level forward received that the decoder needs."""

    input_ids: Optional[torch.Tensor]
    attention_mask: Any
    labels: Optional[torch.Tensor]
    mode: Optional[str]
    continuing: bool = False  # a decoding step after cached positions: the stock model, whatever its tokens are


@dataclass
class NoiseAttachment:
    """The hooks ``attach`` put on a model, and the noise mode they run in (see the module docstring)."""

    model: nn.Module
    decoder: nn.Module
    image_token_id: int
    video_token_id: Optional[int]
    handles: list = field(default_factory=list)
    mode_override: Optional[str] = None
    current: Optional[_CallInputs] = None

    def __post_init__(self) -> None:
        self.signature = inspect.signature(self.model.forward)

    # --- the generator (also when peft wrapped it in modules_to_save) -----------------------------------------
    @property
    def generator_module(self) -> nn.Module:
        return getattr(self.model, GENERATOR_ATTR)

    @property
    def generator(self) -> NoiseGenerator:
        return find_noise_generator(self.generator_module)

    # --- hooks ---------------------------------------------------------------------------------------------------
    def before_model(self, module: nn.Module, args: tuple, kwargs: dict):
        mode = kwargs.pop("noise_mode", None)
        if mode is not None and mode not in MODES:
            raise ValueError(f"noise_mode={mode!r} is not one of {', '.join(MODES)}.")
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        cache = bound.get("past_key_values")
        continuing = cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0
        self.current = _CallInputs(bound.get("input_ids"), bound.get("attention_mask"), bound.get("labels"), mode,
                                   continuing)
        return args, kwargs

    def after_model(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.current = None

    def before_decoder(self, module: nn.Module, args: tuple, kwargs: dict):
        call, embeds = self.current, kwargs.get("inputs_embeds")
        if call is None or call.continuing:
            # The decoder alone (no top-level call: nothing to find the image rows from), or a decoding step (a
            # random model may even generate a placeholder id there): the stock model.
            return None
        generator = self.generator
        mode = generator.resolve_mode(call.mode or self.mode_override)
        if mode == "off":
            return None
        if embeds is None or call.input_ids is None:
            raise ValueError(
                "The noise generator finds image rows from the model's input_ids and noises the decoder's "
                "inputs_embeds; call the model with input_ids (not inputs_embeds) or use noise mode 'off'."
            )
        # Text-only prompts run the generator too (every row outside the image mask passes through bit for bit): skipping
        # them would read the mask on the host, a sync the stream would wait for.
        queries = self.query_mask(call.input_ids, embeds)
        noised, output = self.noised_embeds(embeds, queries, call, mode)
        kwargs = dict(kwargs, inputs_embeds=noised)
        if generator.config.noise_deepstack and kwargs.get("deepstack_visual_embeds") is not None:
            kwargs["deepstack_visual_embeds"] = self.noised_deepstack(kwargs, embeds, queries, output)
        return args, kwargs

    # --- the noise -----------------------------------------------------------------------------------------------
    def query_mask(self, input_ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        if tuple(input_ids.shape) != tuple(embeds.shape[:2]):
            raise ValueError(
                f"The model's input_ids {tuple(input_ids.shape)} and its decoder's inputs_embeds "
                f"{tuple(embeds.shape[:2])} are not aligned; noise_generator.attach supports families that place "
                "image features at the rows of their image placeholder tokens."
            )
        queries = input_ids == self.image_token_id
        if self.generator.config.noise_video and self.video_token_id is not None:
            queries = queries | (input_ids == self.video_token_id)
        return queries.to(embeds.device)

    def key_mask(self, call: _CallInputs, embeds: torch.Tensor) -> torch.Tensor:
        ids = call.input_ids.to(embeds.device)
        placeholders = ids == self.image_token_id
        if self.video_token_id is not None:
            placeholders = placeholders | (ids == self.video_token_id)
        attention = call.attention_mask
        if attention is not None:
            if not (isinstance(attention, torch.Tensor) and attention.dim() == 2):
                raise ValueError(
                    "The noise generator needs a 2-D attention mask (1 = token, 0 = padding) to keep padding out of "
                    "its keys; got a prepared mask. Pass the 2-D mask (and a dynamic cache for generation)."
                )
            attention = attention[:, -ids.shape[1]:].to(embeds.device)
        labels = call.labels.to(embeds.device) if call.labels is not None else None
        generator = self.generator
        return text_key_mask(attention, placeholders, labels, training=generator.training,
                             condition_on_answer=generator.config.condition_on_answer)

    def noised_embeds(self, embeds: torch.Tensor, queries: torch.Tensor, call: _CallInputs, mode: str):
        """(``embeds`` with each sample's query rows noised, attending to that sample's key rows; the generator's
        ``PaddedNoiseOutput``). ``embeds`` itself is the padded batch: fixed shapes, masks, no host read."""
        keys = self.key_mask(call, embeds)
        output = self.generator_module(embeds, embeds, keys, mode=mode, image_mask=queries)
        return output.image_embeds.to(embeds.dtype), output

    def noised_deepstack(self, kwargs: dict, embeds: torch.Tensor, queries: torch.Tensor, output) -> list:
        """The deepstack copies (rows at ``visual_pos_masks``, in order) changed as the image rows were: the same noise
        added (or the same factor for ``mul`` injection); the noise is neutral outside the query rows."""
        multiply = self.generator.config.injection == "mul"
        noise = output.noise.to(embeds.dtype).reshape(-1, embeds.shape[-1])
        visual = kwargs["visual_pos_masks"].to(embeds.device)
        copies = kwargs["deepstack_visual_embeds"]
        change = noise.index_select(0, mask_positions(visual, copies[0].shape[0])) if copies else noise[:0]
        return [copy * change.to(copy.dtype) if multiply else copy + change.to(copy.dtype) for copy in copies]


# --- a generator of its own, also under DeepSpeed ZeRO-3 -----------------------------------------------------------


def _zero3_config() -> Optional[dict]:
    """The DeepSpeed config while transformers loads models under ZeRO-3 (a ``TrainingArguments`` with a ZeRO-3
    ``--deepspeed`` config, or an ``HfDeepSpeedConfig``, is alive), else None."""
    from transformers.integrations import deepspeed_config, is_deepspeed_zero3_enabled

    return deepspeed_config() if is_deepspeed_zero3_enabled() else None


@contextlib.contextmanager
def _whole(generator: NoiseGenerator) -> Iterator[None]:
    """Inside the block the generator's ZeRO-3 partitioned parameters are whole on every rank, and what rank 0 writes
    into them is what every rank keeps (collective); a generator that is not partitioned is left alone."""
    partitioned = [p for p in generator.parameters() if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0):
        yield


def _new_generator(config: NoiseGeneratorConfig, reference: torch.Tensor) -> NoiseGenerator:
    """A freshly initialised generator on ``reference``'s device and in its floating dtype. Under ZeRO-3 (the model was
    loaded partitioned) its parameters are partitioned as well, as ``zero.Init`` would have built them, and rank 0's
    initialisation is the one every rank keeps."""
    generator = NoiseGenerator(config)
    generator.to(device=reference.device, dtype=reference.dtype if reference.dtype.is_floating_point else None)
    zero3 = _zero3_config()
    if zero3 is not None:
        import deepspeed

        deepspeed.zero.Init(module=generator, config_dict_or_path=zero3)
        with _whole(generator):
            generator.reset_parameters()
    return generator


def _load_into(generator: NoiseGenerator, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``generator`` strictly, in its device and dtype (gathered under ZeRO-3)."""
    with _whole(generator):
        reference = next(generator.parameters(), None)
        if reference is not None:
            tensors = {name: t.to(device=reference.device, dtype=reference.dtype) for name, t in tensors.items()}
        load_generator_weights(generator, tensors, source=source)


# --- the public API -----------------------------------------------------------------------------------------------


def attachment_of(model: nn.Module) -> Optional[NoiseAttachment]:
    """The attachment of ``model`` (also through a peft wrapper), or None."""
    for module in model.modules():
        attachment = module.__dict__.get(ATTACHMENT_ATTR)
        if attachment is not None:
            return attachment
    return None


def _language_decoder(model: nn.Module) -> nn.Module:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model or hasattr(decoder, "lm_head"):
        raise ValueError(
            f"{type(model).__name__} has no language model (get_decoder()) that takes the image features as "
            "inputs_embeds; noise_generator.attach supports image-text-to-text models that place image features at "
            "their image placeholder rows."
        )
    if "inputs_embeds" not in inspect.signature(decoder.forward).parameters:
        raise ValueError(f"{type(decoder).__name__}.forward takes no inputs_embeds; noise_generator.attach cannot "
                         "noise its inputs.")
    return decoder


def placeholder_ids(model: nn.Module) -> tuple[int, Optional[int]]:
    """(image, video) placeholder token ids of ``model``'s config (video None when it has none); refuses a model
    without an image placeholder token, where MuNG cannot find the image rows."""
    model_config = model.config
    image_token_id = _config_id(model_config, "image_token_id", "image_token_index")
    if image_token_id is None:
        raise ValueError(
            f"{type(model).__name__}'s config has no image_token_id: MuNG finds the image rows by their placeholder "
            "token, so this model cannot carry a noise generator."
        )
    return image_token_id, _config_id(model_config, "video_token_id", "video_token_index")


def fitted_config(model: nn.Module, config: NoiseGeneratorConfig, source: str) -> NoiseGeneratorConfig:
    """``config`` with an empty ``base_model_type`` set to ``model``'s ``model_type``, checked to fit ``model`` (width,
    backbone type; the error names ``source``)."""
    model_type = getattr(model.config, "model_type", None)
    settings = config.to_dict()
    settings["base_model_type"] = settings["base_model_type"] or model_type
    config = NoiseGeneratorConfig.from_dict(settings)
    check_generator_fits(config, source, model.config.get_text_config().hidden_size, model_type)
    return config


def hook(attachment: NoiseAttachment) -> NoiseAttachment:
    """Put ``attachment``'s hooks on its model and decoder and record it on the model (``attachment_of``)."""
    model, decoder = attachment.model, attachment.decoder
    attachment.handles = [
        model.register_forward_pre_hook(attachment.before_model, with_kwargs=True),
        model.register_forward_hook(attachment.after_model, with_kwargs=True, always_call=True),
        decoder.register_forward_pre_hook(attachment.before_decoder, with_kwargs=True),
    ]
    model.__dict__[ATTACHMENT_ATTR] = attachment
    return attachment


def unhook(attachment: NoiseAttachment) -> None:
    """Take ``attachment``'s hooks and record off its model again."""
    for handle in attachment.handles:
        handle.remove()
    attachment.handles = []
    attachment.model.__dict__.pop(ATTACHMENT_ATTR, None)


def attach(model: nn.Module, config: NoiseGeneratorConfig) -> NoiseGenerator:
    """Put a new generator (``config``) into ``model`` (an ``...ForConditionalGeneration`` of transformers); returns it.

    Attach before wrapping the model with peft. ``config.hidden_size`` must be the language model's width; its
    ``base_model_type`` is set to the model's ``model_type`` when empty.
    """
    if attachment_of(model) is not None or find_noise_generator(model) is not None:
        raise ValueError(f"This {type(model).__name__} already has a noise generator; detach it first.")
    if hasattr(model, "peft_config"):
        raise ValueError("Attach the noise generator before wrapping the model with peft (get_peft_model), so the "
                         "hooks sit on the model's own forward.")
    image_token_id, video_token_id = placeholder_ids(model)
    decoder = _language_decoder(model)
    config = fitted_config(model, config, "the generator config")
    generator = _new_generator(config, model.get_input_embeddings().weight)
    generator.train(model.training)  # a new module trains by default; it follows the model's mode instead
    setattr(model, GENERATOR_ATTR, generator)
    model.config.noise_generator = config.to_dict()
    hook(NoiseAttachment(model, decoder, image_token_id, video_token_id))
    return generator


def detach(model: nn.Module) -> NoiseGenerator:
    """Take the generator out of ``model`` again (hooks, submodule and config entry); returns it."""
    attachment = attachment_of(model)
    if attachment is None or type(attachment) is not NoiseAttachment:
        raise ValueError(f"This {type(model).__name__} has no attached noise generator"
                         f"{' (its MuNG is a peft adapter: use unload())' if attachment is not None else ''}.")
    owner = attachment.model
    generator = attachment.generator
    unhook(attachment)
    delattr(owner, GENERATOR_ATTR)
    if hasattr(owner.config, "noise_generator"):
        del owner.config.noise_generator
    return generator


def attach_pretrained(model: nn.Module, folder: str) -> NoiseGenerator:
    """Attach the generator-only checkpoint in ``folder`` (``save_noise_generator``) to ``model``; its width and
    backbone type must fit."""
    config, tensors = load_noise_generator_state(folder)
    check_generator_fits(config, str(folder), model.config.get_text_config().hidden_size,
                         getattr(model.config, "model_type", None))
    generator = attach(model, config)
    _load_into(generator, tensors, str(folder))
    return generator


@contextlib.contextmanager
def noise_mode(model: nn.Module, mode: Optional[str]) -> Iterator[None]:
    """Run the attached generator of ``model`` in ``mode`` (sample | mean | off) inside the block (None: its default)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"noise mode {mode!r} is not one of {', '.join(MODES)}.")
    attachment = attachment_of(model)
    if attachment is None:
        if mode not in (None, "off"):
            raise ValueError(f"noise mode {mode!r} needs a noise generator; this model has none attached.")
        yield
        return
    before, attachment.mode_override = attachment.mode_override, mode
    try:
        yield
    finally:
        attachment.mode_override = before


def mean_loss_over_draws(model: nn.Module, inputs: Mapping[str, Any], num_draws: Optional[int] = None) -> Any:
    """The model's outputs for ``inputs`` with ``loss`` = the mean over the noise draws (``num_samples`` in training,
    else 1; ``num_draws`` overrides) of the loss of one forward each (see the module docstring). The other outputs
    are those of the last draw."""
    draws = num_draws or NoiseDraws.for_call(find_noise_generator(model), model.training).m
    total, outputs = None, None
    for _ in range(draws):
        outputs = model(**inputs)
        total = outputs.loss if total is None else total + outputs.loss
    outputs.loss = total / draws
    return outputs


def saved_generator_tensors(folder: str) -> dict[str, torch.Tensor]:
    """The ``noise_generator.*`` tensors (prefix removed) in the safetensors weights of a ``save_pretrained`` folder."""
    import json
    import os

    from safetensors import safe_open

    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as handle:
                files = sorted(set(json.load(handle)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index} is not a safetensors index (a JSON object whose 'weight_map' maps tensor "
                             f"names to shard files): {err}; save the model again.") from err
        _check_shards_inside(folder, index, files)
    else:
        files = ["model.safetensors"] if os.path.isfile(os.path.join(folder, "model.safetensors")) else []
    prefix, tensors = GENERATOR_PREFIX, {}
    for name in files:
        with safe_open(os.path.join(folder, name), framework="pt") as weights:
            for key in weights.keys():
                if key.startswith(prefix):
                    tensors[key[len(prefix):]] = weights.get_tensor(key)
    return tensors


def _check_shards_inside(folder: str, index: str, files: list) -> None:
    """Every shard an index names is a file name inside ``folder`` (links resolved): an index must not make a load
    read files elsewhere (``../``, absolute paths, a link out of the folder)."""
    import os

    root = os.path.realpath(folder)
    for name in files:
        path = os.path.realpath(os.path.join(folder, name)) if isinstance(name, str) else None
        if path is None or os.path.commonpath([root, path]) != root:
            raise ValueError(f"{index} names the shard {name!r}, which is not inside {folder}; a checkpoint's "
                             "shards must lie in its own folder (check where this checkpoint came from).")


def attach_from_config(model: nn.Module, folder: str) -> tuple[Optional[NoiseGenerator], bool]:
    """After ``from_pretrained`` of a folder whose ``config.json`` records a generator (``noise_generator``): attach
    it and copy its tensors from the folder's weights. Returns (generator or None, whether its tensors were there)."""
    entry = getattr(model.config, "noise_generator", None)
    if entry is None:
        return None, False
    del model.config.noise_generator  # attach records it again
    generator = attach(model, NoiseGeneratorConfig.from_dict(dict(entry), source=f"{folder}/config.json"))
    tensors = saved_generator_tensors(folder)
    if not tensors:
        return generator, False
    _load_into(generator, tensors, str(folder))
    return generator, True
