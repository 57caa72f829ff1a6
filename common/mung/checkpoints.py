"""What a checkpoint folder holds, decided from its files (never from its name), and the tensor files beside the
Hugging Face weights that LoRA and projector-only runs write.

Kinds: ``mung`` (a MuNG peft adapter: ``adapter_config.json`` of peft type MUNG, the generator and optional LoRA;
``noise_generator.peft_method``), ``lora`` (any other ``adapter_config.json``), ``projector`` (``mm_projector.bin`` without model weights),
``generator`` (``noise_generator.safetensors`` + its config without model weights) and ``full`` (model weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from noise_generator import is_mung_adapter_dir, is_noise_generator_dir

from .paths import missing_reason
from .safe_pickles import load_weights_only

ADAPTER_CONFIG_FILE = "adapter_config.json"
PROJECTOR_FILE = "mm_projector.bin"
NON_LORA_FILE = "non_lora_trainables.bin"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
KINDS = ("mung", "lora", "projector", "generator", "full")


def has_weights(folder: str | os.PathLike) -> bool:
    return any((Path(folder) / name).is_file() for name in WEIGHT_FILES)


def has_processor_files(folder: str | os.PathLike) -> bool:
    return any((Path(folder) / name).is_file() for name in PROCESSOR_FILES)


def checkpoint_kind(folder: str | os.PathLike) -> str:
    """``mung`` | ``lora`` | ``projector`` | ``generator`` | ``full`` from the files in ``folder``; a clear error otherwise."""
    path = Path(folder)
    reason = missing_reason(path, "folder")
    if reason:
        raise FileNotFoundError(
            f"--model-path {folder} {reason} (only local checkpoints are supported; download the model first)."
        )
    if is_mung_adapter_dir(path):
        return "mung"
    if (path / ADAPTER_CONFIG_FILE).is_file():
        return "lora"
    if has_weights(path):
        return "full"
    if (path / PROJECTOR_FILE).is_file():
        return "projector"
    if is_noise_generator_dir(path):
        return "generator"
    raise ValueError(
        f"{folder} holds no checkpoint I know: expected model weights ({' / '.join(WEIGHT_FILES)}), a LoRA or MuNG "
        f"peft adapter ({ADAPTER_CONFIG_FILE}), {PROJECTOR_FILE}, or a noise generator (noise_generator.safetensors + "
        "noise_generator_config.json)."
    )


def read_tensor_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``torch.save``'d dict of tensors, read with the weights-only unpickler (never arbitrary objects); a file
    holding anything else, or a damaged one, is refused naming it (``safe_pickles.UntrustedPickle``)."""
    path = Path(path)
    reason = missing_reason(path)
    if reason:
        raise FileNotFoundError(f"{path} {reason}.")
    tensors = load_weights_only(path)
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError(f"{path} does not hold a dict of tensors; re-save it from the run that wrote it.")
    return tensors


def strip_peft_prefix(name: str) -> str:
    """``base_model.model.model.x`` → ``model.x`` (peft's wrapper prefix); other names unchanged."""
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name


def load_named_tensors(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Copy ``tensors`` (model-relative names, peft prefixes allowed) into ``model``'s parameters strictly: every name
    must exist with the same shape. Returns the model-relative names written."""
    params = {strip_peft_prefix(n): p for n, p in model.named_parameters()}
    unknown, wrong_shape = [], []
    for name, tensor in tensors.items():
        key = strip_peft_prefix(name)
        if key not in params:
            unknown.append(name)
        elif tuple(params[key].shape) != tuple(tensor.shape):
            wrong_shape.append(f"{name}: {tuple(tensor.shape)} vs {tuple(params[key].shape)}")
    if unknown or wrong_shape:
        raise ValueError(
            f"{source} does not fit this model: unknown tensors {unknown[:8]}, shape mismatches {wrong_shape[:8]}."
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            target = params[strip_peft_prefix(name)]
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))
    return [strip_peft_prefix(name) for name in tensors]
