"""The tiny Qwen2.5-VL + MuNG checkpoint several tests answer with: the tiny world's Qwen2.5-VL and a generator
initialised at random (seed 0), saved with its processor."""

import torch
from transformers import AutoProcessor

from noise_generator import NoiseGeneratorConfig
from qwen_noise.model.builder import load_model


def build_tiny_qwen(tiny_world: dict, out_dir) -> str:
    torch.manual_seed(0)
    config = NoiseGeneratorConfig(hidden_size=64, num_heads=4, base_model_type="qwen2_5_vl")
    load_model(tiny_world["qwen_model"], generator=config.to_dict()).save_pretrained(out_dir)
    AutoProcessor.from_pretrained(tiny_world["qwen_model"]).save_pretrained(out_dir)
    return str(out_dir)
