"""The projector from vision-tower features to the LLM's embedding width (``linear``, ``mlp{N}x_gelu``, ``identity``)."""

from __future__ import annotations

import re

from torch import nn


class IdentityMap(nn.Module):
    """``identity`` projector: the tower's features are already as wide as the LLM."""

    def forward(self, x, *args, **kwargs):
        return x

    @property
    def config(self) -> dict:
        return {"mm_projector_type": "identity"}


def build_vision_projector(config) -> nn.Module:
    """Projector named by ``config.mm_projector_type`` from ``config.mm_hidden_size`` to ``config.hidden_size``.

    ``mlp2x_gelu`` is ``Sequential(Linear, GELU, Linear)``: state-dict keys ``0.*`` and ``2.*`` as in LLaVA-1.5.
    """
    kind = getattr(config, "mm_projector_type", "linear")
    if config.mm_hidden_size is None:
        raise ValueError("config.mm_hidden_size is not set; it must be the vision tower's hidden size.")
    if kind == "linear":
        return nn.Linear(config.mm_hidden_size, config.hidden_size)
    if kind == "identity":
        if config.mm_hidden_size != config.hidden_size:
            raise ValueError(
                f"mm_projector_type='identity' needs mm_hidden_size ({config.mm_hidden_size}) == hidden_size "
                f"({config.hidden_size})."
            )
        return IdentityMap()
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if match:
        depth = int(match.group(1))
        if depth < 1:
            raise ValueError(f"mm_projector_type={kind!r}: the depth must be at least 1.")
        layers: list[nn.Module] = [nn.Linear(config.mm_hidden_size, config.hidden_size)]
        for _ in range(1, depth):
            layers += [nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)]
        return nn.Sequential(*layers)
    raise ValueError(f"Unknown mm_projector_type {kind!r}; use 'linear', 'mlp<N>x_gelu' or 'identity'.")
