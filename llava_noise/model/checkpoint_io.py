"""Checkpoint files of LLaVA-1.5 beside the Hugging Face weights, in the original formats.

- ``mm_projector.bin``: projector-only runs (pretraining); keys ``model.mm_projector.*``.
- ``non_lora_trainables.bin``: LoRA runs; every trainable non-LoRA tensor (projector and generator), keys as peft
  names them (``base_model.model.model.mm_projector.0.weight``, ``base_model.model.model.noise_generator.*``).
- the generator-only files of ``noise_generator.io`` (``noise_generator.safetensors`` + its config).

Tensors are gathered from ZeRO-3 partitions before saving, so no saved tensor is ever empty. Reading the tensor files
back (weights only, strictly) is ``mung.checkpoints``'s, shared by every backbone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from mung.checkpoints import NON_LORA_FILE, PROJECTOR_FILE, read_tensor_file
from mung.files import atomic_write
from mung.training.distributed import gather_parameters


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
    return gather_parameters(named)


def non_lora_trainables_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor that is not a LoRA tensor (projector, generator, ...), gathered."""
    return gather_parameters((n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)


def save_projector(model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True) -> None:
    state = projector_state(model)
    if is_main_process:
        _torch_save(state, Path(directory) / PROJECTOR_FILE)


def save_non_lora_trainables(model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True) -> None:
    state = non_lora_trainables_state(model)
    if is_main_process:
        _torch_save(state, Path(directory) / NON_LORA_FILE)


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
