"""Sizes of the two presets: split lengths and model shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGE_SIZE = 112  # rendered PNG side; Qwen's processor turns it into an [1, 8, 8] grid


@dataclass(frozen=True)
class Preset:
    name: str
    n_train: int
    n_shift_train: int
    n_eval: int
    n_shift_eval: int
    llama: dict[str, Any] = field(default_factory=dict)
    # builder version 4's splits (the same for both presets)
    n_shift_val: int = 300
    n_distractor_train: int = 1000
    n_distractor_val: int = 300
    n_distractor_eval: int = 300
    clip: dict[str, Any] = field(default_factory=dict)
    qwen_text: dict[str, Any] = field(default_factory=dict)
    qwen_vision: dict[str, Any] = field(default_factory=dict)
    # sentencepiece needs >= ~300 for its 256 byte pieces; 768 leaves room for every answer word as one piece.
    llava_vocab_size: int = 768
    qwen_vocab_size: int = 600


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        n_train=2000,
        n_shift_train=1000,
        n_eval=300,
        n_shift_eval=300,
        llama=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
        clip=dict(image_size=56, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
        qwen_text=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            mrope_section=[2, 3, 3],  # sums to head_dim / 2 = 8
        ),
        qwen_vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2),
    ),
    "small": Preset(
        name="small",
        n_train=4000,
        n_shift_train=2000,
        n_eval=300,
        n_shift_eval=300,
        llama=dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1024),
        clip=dict(image_size=112, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
        qwen_text=dict(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            mrope_section=[8, 12, 12],  # sums to head_dim / 2 = 32
        ),
        qwen_vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4),
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown tiny_world preset {name!r}; choose one of {sorted(PRESETS)}") from None
