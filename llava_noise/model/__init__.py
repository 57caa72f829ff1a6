"""LLaVA-1.5 model: config, Llama-based causal LM with the multimodal mixin, vision tower, projector, loader."""

from .configuration_llava import LlavaConfig
from .language_model.llava_llama import LlavaLlamaForCausalLM, LlavaLlamaModel

__all__ = ["LlavaConfig", "LlavaLlamaForCausalLM", "LlavaLlamaModel"]
