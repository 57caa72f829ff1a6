"""``load_pretrained_model``: LLaVA's loader signature over the shared loader (``mung.loading.load``).

What to load is decided from the files in ``model_path`` (never from its name), for every backbone: a LoRA adapter
(+ ``non_lora_trainables.bin``) over ``model_base``, ``mm_projector.bin`` over ``model_base``, generator-only files
over ``model_base``, or a full model (original ``model_type: "llava"`` configs included).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from mung.loading import LoadOptions, load

from .configuration_llava import LlavaConfig

# Model types whose config.json we accept as LLaVA-1.5 on Llama.
LLAVA_MODEL_TYPES = ("llava_noise", "llava", "llava_llama", "llama")


def load_llava_config(path: str | os.PathLike) -> LlavaConfig:
    """Our ``LlavaConfig`` from ``path/config.json``, also for original LLaVA-1.5 (``model_type: "llava"``) and
    plain Llama configs."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"No config.json in {path}.")
    with open(config_file, encoding="utf-8") as handle:
        data = json.load(handle)
    model_type = data.get("model_type")
    if model_type not in LLAVA_MODEL_TYPES:
        raise ValueError(
            f"{config_file} has model_type {model_type!r}; load_pretrained_model serves LLaVA-1.5 on Llama "
            f"({', '.join(LLAVA_MODEL_TYPES)})."
        )
    if "text_config" in data:
        raise ValueError(
            f"{config_file} is a transformers-native LlavaForConditionalGeneration config (llava-hf); convert it to "
            "the original LLaVA layout or use the original checkpoint."
        )
    data = {k: v for k, v in data.items() if k not in ("model_type", "architectures", "transformers_version")}
    config = LlavaConfig.from_dict(data)
    config.architectures = ["LlavaLlamaForCausalLM"]
    return config


def load_pretrained_model(
    model_path: str,
    model_base: Optional[str],
    model_name: str,
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: Any = "auto",
    device: str = "cuda",
    use_flash_attn: bool = False,
    **kwargs: Any,
):
    """Load a checkpoint → (tokenizer, model, image_processor, context_len), as the original LLaVA returns.

    ``model_name`` is accepted for compatibility; the files in ``model_path`` decide how to load. On CPU the
    model is float32; on GPU float16 (as the original) unless ``dtype`` (or ``torch_dtype``) is given.
    """
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
    if kwargs:
        raise TypeError(f"load_pretrained_model got unknown arguments {sorted(kwargs)}.")
    on_cpu = str(device).startswith("cpu")
    options = LoadOptions(
        device=device,
        dtype=dtype if dtype is not None else (torch.float32 if on_cpu else torch.float16),
        bits=4 if load_4bit else 8 if load_8bit else 16,
        attn_implementation="flash_attention_2" if use_flash_attn else None,
        device_map=device_map if device == "cuda" else None,
    )
    loaded = load(model_path, model_base, options)
    return loaded.tokenizer, loaded.model, loaded.processor, loaded.context_len


__all__ = ["LLAVA_MODEL_TYPES", "load_llava_config", "load_pretrained_model"]
