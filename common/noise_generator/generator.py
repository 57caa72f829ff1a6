"""The Multimodal Noise Generator module and its math.

Per sample i, with image tokens X_V^i [n_i, d] (queries) and the sample's text embeddings X_L^i (keys/values,
restricted by a key mask):

    h       = o_proj(MultiHead(q_proj(X_V), k_proj(X_L), v_proj(X_L)))
    mu      = mu_proj(h)
    log_sig = clamp(log_sigma_proj(h), log_sigma_min, log_sigma_max)
    noise   = mu + exp(log_sig) * eps,  eps ~ N(0, I)
    X_V'    = X_V + noise          (injection="add")   or   X_V * noise   (injection="mul")

Samples are padded into one batch and attended in a single fused call, so memory grows linearly with the batch
and there is no per-sample Python loop or host synchronisation in the math.
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


def _unpad(padded: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    return [padded[i, :n] for i, n in enumerate(lengths)]


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

    def _noise(self, mode: str, mu: torch.Tensor, log_sigma: torch.Tensor,
               eps: Optional[Sequence[torch.Tensor]], lengths: list[int]) -> torch.Tensor:
        """mu (mode ``mean``) or mu + sigma * eps with eps standard normal (given, or drawn here)."""
        if mode == "mean":
            return mu
        if eps is None:
            draws = torch.randn(mu.shape, device=mu.device, dtype=torch.float32)
        else:
            eps, d = list(eps), self.config.hidden_size
            if len(eps) != len(lengths) or any(tuple(e.shape) != (n, d) for e, n in zip(eps, lengths)):
                raise ValueError("eps must hold one [n_i, d] tensor per sample, shaped like that sample's image tokens.")
            draws = pad_sequence([e.float() for e in eps], batch_first=True) if mu.shape[1] else mu
        if self.config.kind == "gaussian":
            return self.config.gaussian_std * draws
        return mu + log_sigma.exp() * draws

    def forward(
        self,
        image_embeds: Sequence[torch.Tensor],
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        mode: Optional[str] = None,
        eps: Optional[Sequence[torch.Tensor]] = None,
        output_attentions: bool = False,
    ) -> NoiseOutput:
        """Noise every sample's image tokens.

        Args:
            image_embeds: one ``[n_i, d]`` tensor per sample (all its image tokens after the projector/merger;
                ``n_i`` may be 0).
            text_embeds: ``[B, T, d]`` text token embeddings of the same samples.
            text_mask: ``[B, T]`` bool, True where a text position is a key (never padding or image placeholders).
            mode: ``sample`` | ``mean`` | ``off``; None = sampling in training, ``config.inference_mode`` otherwise.
            eps: optional standard-normal draws, one ``[n_i, d]`` tensor per sample, for reproducible noise.
            output_attentions: also return the cross-attention weights.
        """
        image_embeds = list(image_embeds)
        self._check_inputs(image_embeds, text_embeds, text_mask)
        mode = self.resolve_mode(mode)
        if mode == "off" or not image_embeds:
            return NoiseOutput(image_embeds=image_embeds, mode="off")

        lengths = [x.shape[0] for x in image_embeds]
        out_dtype = image_embeds[0].dtype
        compute_dtype = self._param_dtype(out_dtype)
        queries = pad_sequence([x.to(compute_dtype) for x in image_embeds], batch_first=True)
        mu, log_sigma, has_key, weights = self._statistics(queries, text_embeds, text_mask, output_attentions)
        noise = self._noise(mode, mu, log_sigma, eps, lengths)

        if compute_dtype == out_dtype:
            base = queries.float()
        else:  # keep the inputs' own precision for the residual path
            base = pad_sequence([x.float() for x in image_embeds], batch_first=True)
        if has_key is not None:
            # No key (e.g. an empty prompt): leave that sample's image tokens as they are.
            neutral = 1.0 if self.config.injection == "mul" else 0.0
            noise = torch.where(has_key[:, None, None], noise, torch.full_like(noise, neutral))
        noised = base * noise if self.config.injection == "mul" else base + noise
        # Inputs pass through in their own dtype; the math above ran in float32.
        return NoiseOutput(
            image_embeds=_unpad(noised.to(out_dtype), lengths),
            noise=_unpad(noise, lengths),
            mu=_unpad(mu, lengths),
            log_sigma=_unpad(log_sigma, lengths),
            attentions=weights,
            mode=mode,
        )

    def extra_repr(self) -> str:
        c = self.config
        init = f"normal(std={c.init_std})" if c.init == "normal" else c.init
        return f"kind={c.kind}, heads={c.num_heads}, injection={c.injection}, init={init}"
