"""LLaVA-1.5 with MuNG's noise generator, for current transformers (layout and flags of the original LLaVA)."""

from mung.known_log_messages import install_known_message_filters

install_known_message_filters()  # before transformers/peft import bitsandbytes, which warns while importing

from .model import LlavaConfig, LlavaLlamaForCausalLM  # noqa: E402

__all__ = ["LlavaConfig", "LlavaLlamaForCausalLM"]
