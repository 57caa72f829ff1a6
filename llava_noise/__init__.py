"""LLaVA-1.5 with MuNG's noise generator, for current transformers (layout and flags of the original LLaVA)."""

import mung  # noqa: F401  (first: its import filters the expected log lines of the dependencies)

from .model import LlavaConfig, LlavaLlamaForCausalLM  # noqa: E402

__all__ = ["LlavaConfig", "LlavaLlamaForCausalLM"]
