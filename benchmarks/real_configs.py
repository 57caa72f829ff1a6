"""The real configurations of the checkpoints the GPU check builds (random weights, nothing downloaded), written out
as config dicts from their published ``config.json``, and the tiny versions of the same architectures its CPU smoke
mode builds; plus the dummy inputs of one image and a question in each family's own layout.

- LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf): Vicuna-7B (Llama, 4096 wide, 32 layers) + CLIP ViT-L/14-336, 576 image
  tokens.
- Qwen2.5-VL-3B-Instruct: Qwen2 2048 wide, 36 layers, 16 heads / 2 KV heads, M-RoPE; its ViT (32 blocks, windowed);
  a 896 x 896 image gives a 64 x 64 patch grid, 2 x 2 merged into 1,024 image tokens.
- Gemma 3 4B (google/gemma-3-4b-it): 2560 wide, 34 layers, head_dim 256, sliding window; SigLIP 896 px pooled to 256
  image tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import AutoConfig, PretrainedConfig

LLAVA_7B = {
    "model_type": "llava", "image_token_index": 32000, "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
    "text_config": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "vocab_size": 32064, "rope_theta": 10000.0,
    },
    "vision_config": {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
        "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768,
    },
}
QWEN25_VL_3B = {
    "model_type": "qwen2_5_vl", "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": True,
    "text_config": {
        "model_type": "qwen2_5_vl_text", "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
        "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
        "vocab_size": 151936, "rope_theta": 1000000.0, "tie_word_embeddings": True,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
    },
}
GEMMA3_4B = {
    "model_type": "gemma3", "image_token_index": 262144, "boi_token_index": 255999, "eoi_token_index": 256000,
    "mm_tokens_per_image": 256,
    "text_config": {
        "model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 1024,
        "query_pre_attn_scalar": 256, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0, "vocab_size": 262208,
    },
    "vision_config": {
        "model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
        "num_attention_heads": 16, "image_size": 896, "patch_size": 14, "vision_use_head": False,
    },
}
REAL = {"LLaVA-1.5-7B": LLAVA_7B, "Qwen2.5-VL-3B": QWEN25_VL_3B, "Gemma-3-4B": GEMMA3_4B}


def _qwen25_vl(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> dict:
    """A larger Qwen2.5-VL: its language model's published sizes, the same vision tower projecting to its width."""
    settings = copy.deepcopy(QWEN25_VL_3B)
    settings["text_config"].update(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=152064,
                                   tie_word_embeddings=False)
    settings["tie_word_embeddings"] = False
    settings["vision_config"]["out_hidden_size"] = hidden
    return settings


# Only counted (docs/scaling.md's memory estimates, benchmarks/zero_memory.py), never built at full size.
LARGER = {"Qwen2.5-VL-7B": _qwen25_vl(3584, 18944, 28, 28, 4), "Qwen2.5-VL-32B": _qwen25_vl(5120, 27648, 64, 40, 8)}

# The smoke mode's shrinking: these keys replaced in the text / vision config (everything else stays real).
TINY_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}
TINY_TEXT_FAMILY = {"llava": {"num_key_value_heads": 4},
                    "qwen2_5_vl": {"rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
                    "gemma3": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 32}}
TINY_VISION = {"llava": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "image_size": 56},
               "qwen2_5_vl": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                              "out_hidden_size": 64, "fullatt_block_indexes": [1]},
               "gemma3": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "image_size": 56}}
# Smoke vocabularies of 1,024 (the logits over 150k-260k words would dominate a tiny model), special ids moved in.
TINY_TOP = {"llava": {"image_token_index": 1000, "pad_token_id": 1001},
            "qwen2_5_vl": {"image_token_id": 1000, "video_token_id": 1001, "vision_start_token_id": 1002,
                           "vision_end_token_id": 1003, "bos_token_id": 1004, "eos_token_id": 1005},
            "gemma3": {"mm_tokens_per_image": 4, "image_token_index": 1000, "boi_token_index": 1001,
                       "eoi_token_index": 1002}}
TINY_VOCAB = 1024
WORDS = (10, 900)  # random text ids: below every family's special ids in either size
QWEN_PATCH_GRID = {False: 64, True: 8}  # patches per side: 896 px at real size (1,024 tokens), 16 tokens in smoke


def config_dict(name: str, smoke: bool) -> dict:
    """The config dict of ``name`` (a key of REAL or LARGER), shrunk to tiny widths for the smoke mode."""
    settings = copy.deepcopy({**REAL, **LARGER}[name])
    if smoke:
        family = settings["model_type"]
        settings["text_config"].update(TINY_TEXT, vocab_size=TINY_VOCAB, **TINY_TEXT_FAMILY.get(family, {}))
        settings["vision_config"].update(TINY_VISION[family])
        settings.update(TINY_TOP.get(family, {}))
    return settings


def build_config(name: str, smoke: bool) -> PretrainedConfig:
    settings = config_dict(name, smoke)
    return AutoConfig.for_model(settings.pop("model_type"), **settings)


@dataclass
class Batch:
    """Model inputs of ``size`` samples (one image + ``text`` tokens each) and how many image tokens each has."""

    inputs: dict
    image_tokens: int


def dummy_batch(config: PretrainedConfig, size: int, text: int, labels: bool, device, dtype, smoke: bool) -> Batch:
    """One image and ``text`` random text tokens per sample, in the family's layout; with ``labels`` the second half
    of the text is the supervised answer."""
    family = config.model_type
    vision = config.vision_config
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(*WORDS, (size, text), generator=generator)
    if family == "qwen2_5_vl":
        side = QWEN_PATCH_GRID[smoke]
        count = side * side // vision.spatial_merge_size ** 2
        head = [config.vision_start_token_id] + [config.image_token_id] * count + [config.vision_end_token_id]
        patch = 3 * vision.temporal_patch_size * vision.patch_size ** 2
        extra = {"pixel_values": torch.randn(size * side * side, patch, generator=generator),
                 "image_grid_thw": torch.tensor([[1, side, side]] * size)}
    else:
        patches = (vision.image_size // vision.patch_size) ** 2
        count = config.mm_tokens_per_image if family == "gemma3" else patches
        image = config.image_token_id
        head = ([2, config.boi_token_index, *[image] * count, config.eoi_token_index] if family == "gemma3"
                else [1, *[image] * count])
        extra = {"pixel_values": torch.randn(size, 3, vision.image_size, vision.image_size, generator=generator)}
    ids = torch.cat([torch.tensor([head] * size), words], dim=1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra}
    if family == "qwen2_5_vl":
        inputs["mm_token_type_ids"] = (ids == config.image_token_id).int()
    if family == "gemma3":
        inputs["token_type_ids"] = (ids == config.image_token_id).long()
    if labels:
        target = ids.clone()
        target[:, : ids.shape[1] - text // 2] = -100
        inputs["labels"] = target
    moved = {k: v.to(device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
    return Batch(moved, count)
