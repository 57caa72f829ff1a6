"""LLaVA-1.5 with MuNG's noise generator, for current transformers (layout and flags of the original LLaVA)."""

from .model import LlavaConfig, LlavaLlamaForCausalLM

__all__ = ["LlavaConfig", "LlavaLlamaForCausalLM"]
