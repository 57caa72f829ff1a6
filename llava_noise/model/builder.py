"""``load_pretrained_model``: the one loader behind the CLI, the eval scripts, the LoRA merge and the tests.

What to load is decided from the files in ``model_path`` (never from its name):

- ``adapter_config.json`` (+ ``non_lora_trainables.bin``): a LoRA run over ``model_base``; merged after loading.
- ``mm_projector.bin``: a projector-only run (pretraining) over ``model_base``.
- ``noise_generator.safetensors`` without model weights: a generator-only run over the full LLaVA ``model_base``.
- ``config.json`` + weights: a full LLaVA model (original ``model_type: "llava"`` configs included).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import AutoTokenizer, BitsAndBytesConfig

from noise_generator import (
    WEIGHTS_NAME as GENERATOR_WEIGHTS,
    NoiseGeneratorConfig,
    check_generator_fits,
    load_generator_weights,
    load_noise_generator_state,
)
from noise_generator.load_report import HeldLoadReport

from ..constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_PATCH_TOKEN
from .checkpoint_io import (
    ADAPTER_CONFIG_FILE,
    NON_LORA_FILE,
    PROJECTOR_FILE,
    load_named_tensors,
    load_projector_file,
    read_tensor_file,
)
from .configuration_llava import LlavaConfig
from .language_model.llava_llama import LlavaLlamaForCausalLM

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
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


def has_weights(path: str | os.PathLike) -> bool:
    return any((Path(path) / name).is_file() for name in WEIGHT_FILES)


def _load_model(
    path: str, config: LlavaConfig, allowed_missing: tuple[str, ...], **kwargs: Any
) -> LlavaLlamaForCausalLM:
    """``from_pretrained`` that fails on any missing weight other than the ``allowed_missing`` name fragments (which
    the caller restores right after, so transformers' MISSING report for them is held back)."""
    with HeldLoadReport(allowed_missing) as report:
        model, info = LlavaLlamaForCausalLM.from_pretrained(path, config=config, output_loading_info=True, **kwargs)
    report.release_unless_expected(info)
    missing = [k for k in info["missing_keys"] if not any(part in k for part in allowed_missing)]
    if missing:
        raise ValueError(
            f"Loading {path}: weights missing from the checkpoint: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Is it the right base model?"
        )
    if info.get("mismatched_keys"):
        raise ValueError(f"Loading {path}: weights with mismatched shapes: {info['mismatched_keys'][:10]}.")
    return model


def _require_generator(tensors: dict, config: LlavaConfig, source: str) -> None:
    if not config.noise_generator:
        return
    if not any("noise_generator." in name for name in tensors):
        raise ValueError(
            f"{source} has no noise-generator tensors, but config.json configures a generator. The checkpoint is "
            "incomplete (was it written before the generator was added?)."
        )


def _require_projector(tensors: dict, source: str) -> None:
    if not any("mm_projector." in name for name in tensors):
        raise ValueError(f"{source} holds no mm_projector tensors; the projector of this run is missing.")


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
    """Load a LLaVA-1.5 (MuNG) checkpoint → (tokenizer, model, image_processor, context_len).

    ``model_name`` is accepted for compatibility; the files in ``model_path`` decide how to load. On CPU the
    model is float32; on GPU float16 unless ``dtype`` (or ``torch_dtype``) is given.
    """
    path = Path(model_path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--model-path {model_path} does not exist or is not a folder (only local checkpoints are supported; "
            "download the model first)."
        )
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
    if dtype is None:
        dtype = torch.float32 if str(device).startswith("cpu") else torch.float16
    load_kwargs: dict[str, Any] = {"dtype": dtype}
    load_kwargs["device_map"] = {"": device} if device != "cuda" else device_map
    if use_flash_attn:
        load_kwargs["attn_implementation"] = "flash_attention_2"
    if load_8bit or load_4bit:
        skip = ["mm_projector", "noise_generator", "vision_tower", "lm_head"]
        load_kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
            if load_8bit
            else BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True,
                bnb_4bit_quant_type="nf4",
                llm_int8_skip_modules=skip,
            )
        )
    load_kwargs.update(kwargs)

    def need_base(kind: str) -> str:
        if not model_base:
            raise ValueError(
                f"{model_path} is a {kind} checkpoint without the base weights; pass the model it was trained on as "
                "--model-base."
            )
        if not Path(model_base).is_dir():
            raise FileNotFoundError(
                f"--model-base {model_base} does not exist or is not a folder (only local checkpoints are supported)."
            )
        return model_base

    is_lora = (path / ADAPTER_CONFIG_FILE).is_file()
    generator_only = (path / GENERATOR_WEIGHTS).is_file() and not has_weights(path) and not is_lora
    if is_lora:
        base = need_base("LoRA")
        model = _load_lora(path, base, load_kwargs)
        tokenizer_dir = path if (path / "tokenizer_config.json").is_file() else Path(base)
    elif (path / PROJECTOR_FILE).is_file() and not has_weights(path):
        base = need_base("projector-only")
        config = load_llava_config(path)
        model = _load_model(base, config, ("mm_projector.", "noise_generator."), **load_kwargs)
        load_projector_file(model.get_model().mm_projector, path / PROJECTOR_FILE)
        tokenizer_dir = Path(base)
    elif generator_only:
        base = need_base("generator-only")
        model = _load_generator_over_base(path, base, load_kwargs)
        tokenizer_dir = Path(base)
    elif has_weights(path):
        config = load_llava_config(path)
        model = _load_model(str(path), config, (), **load_kwargs)
        tokenizer_dir = path
    else:
        raise ValueError(
            f"{model_path} holds no checkpoint I know: expected adapter_config.json (LoRA), {PROJECTOR_FILE}, "
            f"{GENERATOR_WEIGHTS} or config.json with model weights."
        )

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)
    if getattr(model.config, "mm_use_im_patch_token", False):
        tokenizer.add_tokens([DEFAULT_IMAGE_PATCH_TOKEN], special_tokens=True)
    if getattr(model.config, "mm_use_im_start_end", False):
        tokenizer.add_tokens([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))

    image_processor = None
    tower = model.get_vision_tower()
    if tower is not None:
        weight = model.get_input_embeddings().weight
        tower_dtype = weight.dtype if weight.dtype.is_floating_point else dtype
        tower.load_model(device=weight.device, dtype=tower_dtype)
        image_processor = tower.image_processor
    context_len = getattr(model.config, "max_sequence_length", None) or 2048
    model.eval()
    return tokenizer, model, image_processor, context_len


def _load_lora(path: Path, base: str, load_kwargs: dict) -> LlavaLlamaForCausalLM:
    from peft import PeftModel

    config = load_llava_config(path)
    non_lora_path = path / NON_LORA_FILE
    if not non_lora_path.is_file():
        raise FileNotFoundError(
            f"{path} has a LoRA adapter but no {NON_LORA_FILE} (projector and generator weights); it cannot be loaded."
        )
    tensors = read_tensor_file(non_lora_path)
    _require_projector(tensors, str(non_lora_path))
    _require_generator(tensors, config, str(non_lora_path))
    model = _load_model(base, config, ("mm_projector.", "noise_generator."), **load_kwargs)
    load_named_tensors(model, tensors, str(non_lora_path))
    logger.info("Merging the LoRA adapter of %s", path)
    model = PeftModel.from_pretrained(model, str(path))
    return model.merge_and_unload()


def _load_generator_over_base(path: Path, base: str, load_kwargs: dict) -> LlavaLlamaForCausalLM:
    ng_config, tensors = load_noise_generator_state(path)
    config = load_llava_config(base)
    check_generator_fits(ng_config, str(path), hidden_size=config.hidden_size, base_model_type=LlavaConfig.model_type)
    config.noise_generator = ng_config.to_dict()
    model = _load_model(base, config, ("noise_generator.",), **load_kwargs)
    load_generator_weights(model.get_model().noise_generator, tensors, source=str(path))
    return model


__all__ = ["load_pretrained_model", "load_llava_config", "NoiseGeneratorConfig"]
