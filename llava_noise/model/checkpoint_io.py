"""Checkpoint files of LLaVA-1.5 beside the Hugging Face weights, in the original formats.

- ``mm_projector.bin``: projector-only runs (pretraining); keys ``model.mm_projector.*``.
- ``non_lora_trainables.bin``: LoRA runs; every trainable non-LoRA tensor (projector and generator), keys as peft
  names them (``base_model.model.model.mm_projector.0.weight``, ``base_model.model.model.noise_generator.*``).
- the generator-only files of ``noise_generator.io`` (``noise_generator.safetensors`` + its config).

Tensors are gathered from ZeRO-3 partitions before saving, so no saved tensor is ever empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from noise_generator.io import atomic_write
from noise_generator.training import gather_parameters

PROJECTOR_FILE = "mm_projector.bin"
NON_LORA_FILE = "non_lora_trainables.bin"
ADAPTER_CONFIG_FILE = "adapter_config.json"


def gather_named(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``named`` parameters; gathers ZeRO-3 partitions (collective: call on every rank)."""
    return gather_parameters(named)


def _check_complete(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    empty = [name for name, t in tensors.items() if t.numel() == 0]
    if empty:
        raise ValueError(f"Refusing to write {path}: tensors {empty[:5]} are empty (still ZeRO-3 partitioned).")


def _torch_save(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    _check_complete(tensors, path)
    atomic_write(path, lambda tmp: torch.save(dict(tensors), tmp))


def projector_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.mm_projector.*`` tensors (names without any peft prefix), gathered."""
    named = []
    for name, param in model.named_parameters():
        if "mm_projector." in name:
            named.append(("model.mm_projector." + name.split("mm_projector.", 1)[1], param))
    return gather_named(named)


def non_lora_trainables_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor that is not a LoRA tensor (projector, generator, ...), gathered."""
    return gather_named((n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)


def save_projector(model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True) -> None:
    state = projector_state(model)
    if is_main_process:
        _torch_save(state, Path(directory) / PROJECTOR_FILE)


def save_non_lora_trainables(model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True) -> None:
    state = non_lora_trainables_state(model)
    if is_main_process:
        _torch_save(state, Path(directory) / NON_LORA_FILE)


def read_tensor_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"Cannot read {path}: {err}. The file is corrupt or truncated; re-save it.") from err


def strip_peft_prefix(name: str) -> str:
    """``base_model.model.model.x`` → ``model.x`` (peft's wrapper prefixes), other names unchanged."""
    if name.startswith("base_model.model."):
        name = name[len("base_model.model.") :]
    return name


def load_projector_file(projector: nn.Module, path: str | os.PathLike) -> None:
    """Load ``mm_projector.bin`` (keys ``...mm_projector.<name>``) strictly into ``projector``."""
    tensors = read_tensor_file(path)
    own = {name.split("mm_projector.", 1)[1]: t for name, t in tensors.items() if "mm_projector." in name}
    expected = set(projector.state_dict())
    if set(own) != expected:
        raise ValueError(
            f"{path} does not fit the projector: missing {sorted(expected - set(own))}, unexpected "
            f"{sorted(set(own) - expected)}. Check --mm_projector_type against the run that wrote it."
        )
    for name, tensor in own.items():
        target = projector.state_dict()[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(
                f"{path}: projector tensor {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(target.shape)} (different vision tower or LLM width?)."
            )
    projector.load_state_dict(own, strict=True)


def load_named_tensors(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` (model-relative names, peft prefixes allowed) into ``model``; every name must exist."""
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
