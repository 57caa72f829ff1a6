"""Configuration of the LLaVA-1.5 model (a Llama config plus the multimodal and noise-generator keys)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig


@strict
class LlavaConfig(LlamaConfig):
    r"""Llama settings plus LLaVA's multimodal keys (names as in the original LLaVA-1.5 config.json) and the
    MuNG noise generator.

    mm_vision_tower: path or name of the CLIP vision tower (its weights are loaded from there).
    mm_hidden_size: width of the vision tower's features (the projector's input).
    mm_projector_type: ``linear``, ``mlp{N}x_gelu`` or ``identity``.
    mm_vision_select_layer: hidden-state index of the tower whose output is used (LLaVA-1.5: -2).
    mm_vision_select_feature: ``patch`` (drop CLS) or ``cls_patch``.
    image_aspect_ratio: ``pad`` pads images to squares with the processor's mean colour.
    tokenizer_model_max_length: longest sequence after the image features are spliced in.
    tokenizer_padding_side: side on which training batches are padded after the splice.
    noise_generator: ``NoiseGeneratorConfig.to_dict()``, or None for a model without generator.
    """

    model_type = "llava_noise"

    mm_vision_tower: str | None = None
    mm_hidden_size: int | None = None
    mm_projector_type: str = "linear"
    mm_vision_select_layer: int = -1
    mm_vision_select_feature: str = "patch"
    mm_patch_merge_type: str = "flat"
    mm_use_im_start_end: bool = False
    mm_use_im_patch_token: bool = False
    image_aspect_ratio: str | None = None
    tune_mm_mlp_adapter: bool = False
    freeze_mm_mlp_adapter: bool = False
    use_mm_proj: bool = True
    tokenizer_model_max_length: int | None = None
    tokenizer_padding_side: str = "right"
    noise_generator: dict | None = None


__all__ = ["LlavaConfig"]
