"""The tiny Qwen2.5-VL + MuNG checkpoint several tests answer with: the tiny world's Qwen2.5-VL and a generator
initialised at random (seed 0), saved with its processor."""

import torch
from PIL import Image
from transformers import AutoProcessor

from noise_generator import NoiseGeneratorConfig
from qwen_noise.model.builder import load_model


def build_tiny_qwen(tiny_world: dict, out_dir) -> str:
    torch.manual_seed(0)
    config = NoiseGeneratorConfig(hidden_size=64, num_heads=4, base_model_type="qwen2_5_vl")
    load_model(tiny_world["qwen_model"], generator=config.to_dict()).save_pretrained(out_dir)
    AutoProcessor.from_pretrained(tiny_world["qwen_model"]).save_pretrained(out_dir)
    return str(out_dir)


def mixed_batch(processor, tiny_world: dict) -> dict:
    """Left-padded batch from the stock processor: a two-image sample, a text-only one, a one-image one."""
    folder = tiny_world["image_folder"]
    images = [Image.open(f"{folder}/train/{i:05d}.png") for i in (0, 1, 2)]
    chats = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which is red?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "What shape is it? Answer with one word."}]}],
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}],
    ]
    texts = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
    return dict(inputs)
