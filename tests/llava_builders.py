"""The tiny LLaVA-1.5 config several tests build a model from: the tiny world's Llama with its CLIP tower and an
``mlp2x_gelu`` projector (random until trained), optionally with a generator."""

from typing import Optional

from transformers import CLIPVisionConfig

from llava_noise.model.builder import load_llava_config
from noise_generator import NoiseGeneratorConfig


def tiny_llava_config(tiny_world: dict, generator: Optional[dict] = None, **overrides):
    """``generator``: NoiseGeneratorConfig fields (hidden size from the LLM, 4 heads unless given); ``overrides``:
    further config attributes (``mm_vision_select_layer``, ``image_aspect_ratio``, ...)."""
    config = load_llava_config(tiny_world["llava_llm"])
    config.mm_vision_tower = tiny_world["llava_vision_tower"]
    config.mm_hidden_size = CLIPVisionConfig.from_pretrained(tiny_world["llava_vision_tower"]).hidden_size
    config.mm_projector_type = "mlp2x_gelu"
    for name, value in overrides.items():
        setattr(config, name, value)
    if generator is not None:
        fields = {"num_heads": 4, **generator}
        config.noise_generator = NoiseGeneratorConfig(hidden_size=config.hidden_size, **fields).to_dict()
    return config
