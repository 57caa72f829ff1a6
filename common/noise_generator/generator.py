"""The Multimodal Noise Generator module and its math.

Per sample i, with image tokens X_V^i [n_i, d] (queries) and the sample's text embeddings X_L^i (keys/values,
restricted by a key mask):

    h       = o_proj(MultiHead(q_proj(X_V), k_proj(X_L), v_proj(X_L)))
    mu      = mu_proj(h)
    log_sig = clamp(log_sigma_proj(h), log_sigma_min, log_sigma_max)
    noise   = mu + exp(log_sig) * eps,  eps ~ N(0, I)
    X_V'    = X_V + noise          (injection="add")   or   X_V * noise   (injection="mul")

Samples are padded into one batch and attended in a single fused call, so memory grows linearly with the batch
and there is no per-sample Python loop or host synchronisation in the math. Two ways in, one math:

- a list of per-sample ``[n_i, d]`` tensors (their lengths are host ints, from shapes): padded here, unpadded on the
  way out (``NoiseOutput``);
- a padded ``[B, N, d]`` tensor with an ``image_mask`` ``[B, N]`` saying which rows are image tokens (anywhere in the
  row, e.g. a decoder's ``inputs_embeds`` with the placeholder rows marked): every shape is fixed by the inputs, never
  by the mask's content, so the call neither reads device data on the host nor makes a data-dependent shape
  (``PaddedNoiseOutput``; ``torch.compile(fullgraph=True)`` captures it whole).

Both give the same numbers for the same seed: sample i's k-th image token draws row ``i * n_max + k`` of a
``[B * N, d]`` standard-normal draw, ``n_max`` = the most image tokens of a sample (a device tensor), which is the
layout of ``randn(B, n_max, d)`` that the list form always used. On the CPU, ``torch.randn`` of a longer tensor begins
with the values of a shorter one when the shorter one's size is a multiple of 16 (every width that is a multiple of
16), so the noise equals the list form's bit for bit; the random stream then stands ``B * (N - n_max) * d`` values
further on. On CUDA the draws are as random but not the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from .config import MODES, NoiseGeneratorConfig


@dataclass
class NoiseOutput:
    """Result of one generator call; every list holds one tensor per sample, shaped like that sample's image tokens.

    ``noise``, ``mu`` and ``log_sigma`` are None in mode ``off``. ``attentions`` ([B, heads, max n_i, T], padded)
    is filled only when asked for with ``output_attentions=True``.
    """

    image_embeds: list[torch.Tensor]
    noise: Optional[list[torch.Tensor]] = None
    mu: Optional[list[torch.Tensor]] = None
    log_sigma: Optional[list[torch.Tensor]] = None
    attentions: Optional[torch.Tensor] = None
    mode: str = "off"

    def per_sample(self) -> "NoiseOutput":
        """Already the list form (so inspecting code can call ``per_sample()`` on either output)."""
        return self


@dataclass
class PaddedNoiseOutput:
    """Result of a padded call (``image_mask`` given): ``[B, N, d]`` tensors like the inputs. ``image_embeds`` holds the
    inputs unchanged at rows outside ``image_mask`` and ``noise`` the neutral value there (0 for ``add``, 1 for
    ``mul``); ``mu`` and ``log_sigma`` mean something only at ``image_mask`` rows."""

    image_embeds: torch.Tensor
    image_mask: torch.Tensor
    noise: Optional[torch.Tensor] = None
    mu: Optional[torch.Tensor] = None
    log_sigma: Optional[torch.Tensor] = None
    attentions: Optional[torch.Tensor] = None
    mode: str = "off"

    def per_sample(self) -> NoiseOutput:
        """The list form (one ``[n_i, d]`` tensor per sample). Reads the mask on the host: for inspection
        (noise maps, tests), never on the model's path."""
        mask = self.image_mask.bool()

        def rows(padded: Optional[torch.Tensor]) -> Optional[list[torch.Tensor]]:
            return None if padded is None else [padded[i][mask[i]] for i in range(padded.shape[0])]

        return NoiseOutput(image_embeds=rows(self.image_embeds), noise=rows(self.noise), mu=rows(self.mu),
                           log_sigma=rows(self.log_sigma), attentions=self.attentions, mode=self.mode)


def _unpad(padded: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    return [padded[i, :n] for i, n in enumerate(lengths)]


def _prefix_mask(lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    """``[B, max n_i]`` bool, True at each sample's first ``n_i`` rows; built on the device from shapes alone (a host
    list copied over would wait for the device)."""
    return pad_sequence([torch.ones(n, dtype=torch.bool, device=device) for n in lengths], batch_first=True)


def standard_normal_rows(image_mask: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, N, width]`` float32 standard-normal draws, sample i's k-th image row (k-th True of ``image_mask[i]``)
    taking row ``i * n_max + k`` of one ``[B * N, width]`` draw (see the module docstring); other rows get some row
    of the draw. Index arithmetic on the device only."""
    bsz, n = image_mask.shape
    flat = torch.randn(bsz * n, width, device=image_mask.device, dtype=torch.float32)
    if flat.shape[0] == 0:
        return flat.view(bsz, n, width)
    counts = image_mask.sum(dim=1)
    rank = (image_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    rows = torch.arange(bsz, device=image_mask.device)[:, None] * counts.max() + rank
    return flat.index_select(0, rows.reshape(-1)).view(bsz, n, width)


def rank_gather(per_sample: Sequence[torch.Tensor], image_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N, d]``: sample i's k-th image row (k-th True of ``image_mask[i]``) gets ``per_sample[i][k]``; other rows
    some row of it. The list's shapes are host ints; the placement is computed on the device."""
    padded = pad_sequence([t.float() for t in per_sample], batch_first=True)
    bsz, n = image_mask.shape
    if padded.shape[1] == 0:
        return padded.new_zeros(bsz, n, padded.shape[-1])
    rank = (image_mask.long().cumsum(dim=1) - 1).clamp(min=0, max=padded.shape[1] - 1)
    return padded.gather(1, rank[..., None].expand(bsz, n, padded.shape[-1]))


class NoiseGenerator(nn.Module):
    """Turns a sample's image tokens and text embeddings into additive (or multiplicative) noise for the image tokens."""

    def __init__(self, config: NoiseGeneratorConfig):
        super().__init__()
        config.validate()
        self.config = config
        d = config.hidden_size
        if config.kind == "cross_attn":
            self.q_proj = nn.Linear(d, d)
            self.k_proj = nn.Linear(d, d)
            self.v_proj = nn.Linear(d, d)
            self.o_proj = nn.Linear(d, d)
        elif config.kind == "mlp":
            self.fc1 = nn.Linear(d, d)
            self.fc2 = nn.Linear(d, d)
        if config.kind != "gaussian":
            self.mu_proj = nn.Linear(d, d)
            self.log_sigma_proj = nn.Linear(d, d)
        self.reset_parameters()

    # --- initialisation --------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re)initialise every weight as ``config.init`` says: xavier-uniform or N(0, init_std^2) weights
        (``normal``: the authors' effective init), zero biases; ``zero`` then neutralises the mu and log sigma heads.

        Under DeepSpeed ZeRO-3 call this inside ``GatheredParameters(..., modifier_rank=0)`` so the full tensors
        are visible; the backbones do that from their ``_init_weights``.
        """
        cfg = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if cfg.init == "normal":
                    nn.init.normal_(module.weight, mean=0.0, std=cfg.init_std)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        if cfg.kind != "gaussian" and cfg.init == "zero":
            # Start from the unchanged base model: mu is neutral and sigma is (almost) zero.
            nn.init.zeros_(self.mu_proj.weight)
            nn.init.constant_(self.mu_proj.bias, 1.0 if cfg.injection == "mul" else 0.0)
            nn.init.zeros_(self.log_sigma_proj.weight)
            nn.init.constant_(self.log_sigma_proj.bias, cfg.log_sigma_min)

    # --- helpers -----------------------------------------------------------------------------------------
    def _param_dtype(self, fallback: torch.dtype) -> torch.dtype:
        for param in self.parameters():
            return param.dtype
        return fallback

    def resolve_mode(self, mode: Optional[str]) -> str:
        """The noise mode of this call: explicit ``mode``, else sampling in training and ``inference_mode`` otherwise."""
        if mode is None:
            mode = "sample" if self.training else self.config.inference_mode
        if mode not in MODES:
            raise ValueError(f"Unknown noise mode {mode!r}; choose one of {', '.join(MODES)}.")
        if mode == "sample" and not self.config.sample_noise:
            mode = "mean"
        return mode

    def _attend(
        self, queries: torch.Tensor, text: torch.Tensor, key_mask: torch.Tensor, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Masked multi-head cross-attention. Returns (hidden [B, N, d], has_key [B], attention weights or None)."""
        bsz, n_q, d = queries.shape
        heads = self.config.num_heads
        head_dim = d // heads
        has_key = key_mask.any(dim=-1)
        if text.shape[1] == 0:
            return queries.new_zeros(bsz, n_q, d), has_key, None

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(bsz, -1, heads, head_dim).transpose(1, 2)

        q = split_heads(self.q_proj(queries))
        k = split_heads(self.k_proj(text))
        v = split_heads(self.v_proj(text))
        # A sample without any key would give an all-masked softmax (NaN on some kernels): let it attend to
        # everything and discard its result below.
        safe_mask = (key_mask | ~has_key[:, None])[:, None, None, :]
        weights = None
        if output_attentions:
            scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(head_dim)
            scores = scores.masked_fill(~safe_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            attended = (weights @ v.float()).to(v.dtype)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask)
        attended = attended.transpose(1, 2).reshape(bsz, n_q, d)
        return self.o_proj(attended), has_key, weights

    # --- forward -----------------------------------------------------------------------------------------
    def _check_inputs(self, image_embeds: list[torch.Tensor], text_embeds: torch.Tensor, text_mask: torch.Tensor) -> None:
        bsz, d = len(image_embeds), self.config.hidden_size
        if text_embeds.dim() != 3 or text_embeds.shape[0] != bsz or tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
            raise ValueError(
                f"Noise generator inputs disagree: {bsz} image lists, text_embeds {tuple(text_embeds.shape)}, "
                f"text_mask {tuple(text_mask.shape)}; expected text_embeds [B, T, d] and text_mask [B, T] with B={bsz}."
            )
        for i, x in enumerate(image_embeds):
            if x.dim() != 2 or x.shape[-1] != d:
                raise ValueError(
                    f"Sample {i}: image tokens have shape {tuple(x.shape)}, expected [n, {d}] "
                    "(the generator's hidden_size must equal the LLM hidden size)."
                )

    def _check_padded(self, image_embeds: torch.Tensor, image_mask: torch.Tensor, text_embeds: torch.Tensor,
                      text_mask: torch.Tensor) -> None:
        d = self.config.hidden_size
        if image_embeds.dim() != 3 or image_embeds.shape[-1] != d or tuple(image_mask.shape) != tuple(image_embeds.shape[:2]):
            raise ValueError(
                f"Padded image tokens {tuple(image_embeds.shape)} with image_mask {tuple(image_mask.shape)}: expected "
                f"[B, N, {d}] and [B, N] (the generator's hidden_size must equal the LLM hidden size)."
            )
        if text_embeds.dim() != 3 or text_embeds.shape[0] != image_embeds.shape[0] \
                or tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
            raise ValueError(
                f"Noise generator inputs disagree: image tokens {tuple(image_embeds.shape)}, text_embeds "
                f"{tuple(text_embeds.shape)}, text_mask {tuple(text_mask.shape)}; expected text_embeds [B, T, d] and "
                "text_mask [B, T] with the image tokens' B."
            )

    def _statistics(
        self, queries: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(mu, log sigma) in float32, shaped like the padded ``queries``; has_key [B] (None when the kind has no
        keys); attention weights or None."""
        if self.config.kind == "gaussian":
            mu = queries.new_zeros(queries.shape, dtype=torch.float32)
            std = self.config.gaussian_std
            return mu, torch.full_like(mu, math.log(std) if std > 0 else -math.inf), None, None
        weights = has_key = None
        if self.config.kind == "cross_attn":
            hidden, has_key, weights = self._attend(queries, text_embeds.to(queries.dtype), text_mask.bool(),
                                                    output_attentions)
        else:  # mlp: the image tokens alone
            hidden = self.fc2(F.gelu(self.fc1(queries)))
        mu = self.mu_proj(hidden).float()
        log_sigma = self.log_sigma_proj(hidden).float().clamp(self.config.log_sigma_min, self.config.log_sigma_max)
        return mu, log_sigma, has_key, weights

    def _noise(self, mode: str, mu: torch.Tensor, log_sigma: torch.Tensor, eps: Optional[torch.Tensor],
               image_mask: torch.Tensor) -> torch.Tensor:
        """mu (mode ``mean``) or mu + sigma * eps with eps standard normal (given padded, or drawn here)."""
        if mode == "mean":
            return mu
        draws = standard_normal_rows(image_mask, mu.shape[-1]) if eps is None else eps
        if self.config.kind == "gaussian":
            return self.config.gaussian_std * draws
        return mu + log_sigma.exp() * draws

    def _noised(self, queries: torch.Tensor, base: torch.Tensor, image_mask: torch.Tensor, text_embeds: torch.Tensor,
                text_mask: torch.Tensor, mode: str, eps: Optional[torch.Tensor], output_attentions: bool):
        """The math on padded tensors: (noised [B, N, d] float32, noise, mu, log sigma, attention weights or None).
        Rows outside ``image_mask`` (and every row of a sample without keys) get the neutral noise."""
        mu, log_sigma, has_key, weights = self._statistics(queries, text_embeds, text_mask, output_attentions)
        noise = self._noise(mode, mu, log_sigma, eps, image_mask)
        # No key (e.g. an empty prompt): leave that sample's image tokens as they are; so are the rows that are no
        # image token at all.
        keep = image_mask.bool() if has_key is None else image_mask.bool() & has_key[:, None]
        neutral = 1.0 if self.config.injection == "mul" else 0.0
        noise = torch.where(keep[..., None], noise, torch.full_like(noise, neutral))
        noised = base * noise if self.config.injection == "mul" else base + noise
        return noised, noise, mu, log_sigma, weights

    def forward(
        self,
        image_embeds: Sequence[torch.Tensor] | torch.Tensor,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        mode: Optional[str] = None,
        eps: Optional[Sequence[torch.Tensor] | torch.Tensor] = None,
        output_attentions: bool = False,
        image_mask: Optional[torch.Tensor] = None,
    ) -> NoiseOutput | PaddedNoiseOutput:
        """Noise every sample's image tokens.

        Args:
            image_embeds: one ``[n_i, d]`` tensor per sample (all its image tokens after the projector/merger;
                ``n_i`` may be 0); or, with ``image_mask``, one padded ``[B, N, d]`` tensor.
            text_embeds: ``[B, T, d]`` text token embeddings of the same samples.
            text_mask: ``[B, T]`` bool, True where a text position is a key (never padding or image placeholders).
            mode: ``sample`` | ``mean`` | ``off``; None = sampling in training, ``config.inference_mode`` otherwise.
            eps: optional standard-normal draws for reproducible noise: one ``[n_i, d]`` tensor per sample (each
                sample's image rows in order; with ``image_mask`` their count is not checked, it is device data), or
                with ``image_mask`` a padded ``[B, N, d]`` tensor.
            output_attentions: also return the cross-attention weights.
            image_mask: ``[B, N]`` bool, True at the rows of the padded ``image_embeds`` that are image tokens. With it
                the call is sync-free and returns a ``PaddedNoiseOutput`` (see the module docstring).
        """
        if image_mask is not None:
            return self._forward_padded(image_embeds, image_mask, text_embeds, text_mask, mode, eps, output_attentions)
        image_embeds = list(image_embeds)
        self._check_inputs(image_embeds, text_embeds, text_mask)
        mode = self.resolve_mode(mode)
        if mode == "off" or not image_embeds:
            return NoiseOutput(image_embeds=image_embeds, mode="off")

        lengths = [x.shape[0] for x in image_embeds]
        out_dtype = image_embeds[0].dtype
        compute_dtype = self._param_dtype(out_dtype)
        queries = pad_sequence([x.to(compute_dtype) for x in image_embeds], batch_first=True)
        if compute_dtype == out_dtype:
            base = queries.float()
        else:  # keep the inputs' own precision for the residual path
            base = pad_sequence([x.float() for x in image_embeds], batch_first=True)
        if eps is not None:
            eps, d = list(eps), self.config.hidden_size
            if len(eps) != len(lengths) or any(tuple(e.shape) != (n, d) for e, n in zip(eps, lengths)):
                raise ValueError("eps must hold one [n_i, d] tensor per sample, shaped like that sample's image tokens.")
            eps = pad_sequence([e.float() for e in eps], batch_first=True) if queries.shape[1] else None
        mask = _prefix_mask(lengths, queries.device)
        noised, noise, mu, log_sigma, weights = self._noised(queries, base, mask, text_embeds, text_mask, mode, eps,
                                                             output_attentions)
        # Inputs pass through in their own dtype; the math above ran in float32.
        return NoiseOutput(
            image_embeds=_unpad(noised.to(out_dtype), lengths),
            noise=_unpad(noise, lengths),
            mu=_unpad(mu, lengths),
            log_sigma=_unpad(log_sigma, lengths),
            attentions=weights,
            mode=mode,
        )

    def _forward_padded(self, image_embeds: torch.Tensor, image_mask: torch.Tensor, text_embeds: torch.Tensor,
                        text_mask: torch.Tensor, mode: Optional[str], eps, output_attentions: bool) -> PaddedNoiseOutput:
        """``forward`` on a padded batch: fixed shapes, masks instead of lengths, nothing read on the host."""
        self._check_padded(image_embeds, image_mask, text_embeds, text_mask)
        mode = self.resolve_mode(mode)
        image_mask = image_mask.bool()
        if mode == "off":
            return PaddedNoiseOutput(image_embeds=image_embeds, image_mask=image_mask, mode="off")
        out_dtype = image_embeds.dtype
        queries = image_embeds.to(self._param_dtype(out_dtype))
        base = image_embeds.float()
        if eps is not None and not isinstance(eps, torch.Tensor):
            eps = rank_gather(list(eps), image_mask)
        noised, noise, mu, log_sigma, weights = self._noised(queries, base, image_mask, text_embeds, text_mask, mode,
                                                             None if eps is None else eps.float(), output_attentions)
        # Rows that are no image token stay the inputs bit for bit (x + 0 would turn -0.0 into +0.0).
        noised = torch.where(image_mask[..., None], noised.to(out_dtype), image_embeds)
        return PaddedNoiseOutput(image_embeds=noised, image_mask=image_mask, noise=noise, mu=mu, log_sigma=log_sigma,
                                 attentions=weights, mode=mode)

    def extra_repr(self) -> str:
        c = self.config
        init = f"normal(std={c.init_std})" if c.init == "normal" else c.init
        return f"kind={c.kind}, heads={c.num_heads}, injection={c.injection}, init={init}"
