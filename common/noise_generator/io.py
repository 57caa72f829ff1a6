"""Saving, loading and checking generator-only checkpoints.

A generator checkpoint is a folder with ``noise_generator.safetensors`` (tensor names as in ``NoiseGenerator``,
no prefix) and ``noise_generator_config.json``. Files are written atomically (temporary name, then rename) so a
run killed while saving never leaves a half-written generator behind. ``restore_generator`` copies such a checkpoint
into the generator inside a (wrapped) model: loading a run for inference and resuming one use it alike.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Callable, Mapping, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import CONFIG_NAME, GeneratorSettingsChanged, NoiseGeneratorConfig, changed_settings
from .generator import NoiseGenerator
from .model import find_noise_generator, module_name_of

WEIGHTS_NAME = "noise_generator.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # a MuNG peft adapter (noise_generator.peft_method), told apart here without peft


def write_atomically(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """``write(tmp)`` to a hidden file beside ``path``, flushed to disk, then renamed over ``path``: a run killed while
    saving leaves the previous complete file (or none), never half of one. The file gets the mode a plain ``open``
    would give it (the umask's; ``tempfile.mkstemp`` would give 0600), or the mode of the file it replaces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the kernel applies the umask
    try:
        mode = stat.S_IMODE((path if path.exists() else Path(tmp)).stat().st_mode)
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) replace the file with one of their own, 0600
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_noise_generator_dir(directory: str | os.PathLike) -> bool:
    """True when ``directory`` holds a generator-only checkpoint."""
    directory = Path(directory)
    return (directory / WEIGHTS_NAME).is_file() and (directory / CONFIG_NAME).is_file()


def is_mung_adapter_dir(folder: str | os.PathLike) -> bool:
    """True when ``folder``'s ``adapter_config.json`` is a MuNG adapter's (read without peft)."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return False
    try:
        peft_type = json.loads(path.read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, AttributeError):
        return False
    return isinstance(peft_type, str) and peft_type.split(" ")[0] == "MUNG"


def save_noise_generator(
    generator: NoiseGenerator,
    directory: str | os.PathLike,
    state_dict: Optional[Mapping[str, torch.Tensor]] = None,
) -> Path:
    """Write the generator's weights and config into ``directory``; returns the weights path.

    ``state_dict`` overrides the module's own tensors (e.g. weights gathered from ZeRO-3 partitions).
    """
    directory = Path(directory)
    tensors = dict(state_dict if state_dict is not None else generator.state_dict())
    expected = set(generator.state_dict().keys())
    if set(tensors) != expected:
        raise ValueError(
            f"Refusing to save an incomplete generator to {directory}: missing {sorted(expected - set(tensors))}, "
            f"unexpected {sorted(set(tensors) - expected)}."
        )
    for name, tensor in tensors.items():
        if tensor.numel() == 0:
            raise ValueError(
                f"Refusing to save generator tensor {name!r} with no elements to {directory}: it is still partitioned "
                "(DeepSpeed ZeRO-3); gather the parameters before saving."
            )
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    weights_path = directory / WEIGHTS_NAME
    metadata = {"format": "pt", "kind": generator.config.kind}
    write_atomically(weights_path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    write_atomically(directory / CONFIG_NAME, generator.config.to_json_file)
    return weights_path


def check_generator_fits(
    config: NoiseGeneratorConfig,
    source: str,
    hidden_size: Optional[int] = None,
    base_model_type: Optional[str] = None,
) -> None:
    """Raise a clear error when a generator config cannot serve a model of ``hidden_size`` / ``base_model_type``."""
    if hidden_size is not None and config.hidden_size != hidden_size:
        raise ValueError(
            f"The noise generator in {source} has hidden size {config.hidden_size}, but the model's hidden size is "
            f"{hidden_size}. Use a generator trained on this base model (same LLM width)."
        )
    if base_model_type is not None and config.base_model_type not in (None, base_model_type):
        raise ValueError(
            f"The noise generator in {source} was trained on a '{config.base_model_type}' model and cannot be used "
            f"with a '{base_model_type}' model. Use a generator trained on this backbone."
        )


def load_noise_generator_state(directory: str | os.PathLike) -> tuple[NoiseGeneratorConfig, dict[str, torch.Tensor]]:
    """Read a generator checkpoint's config and tensors (on CPU) without building the module."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Noise generator folder {directory} does not exist.")
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{directory} is not a noise generator checkpoint: {path.name} is missing "
                f"(expected {WEIGHTS_NAME} and {CONFIG_NAME})."
            )
    config = NoiseGeneratorConfig.from_json_file(config_path)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"Cannot read {weights_path}: {err}. The file is corrupt or truncated; re-save it.") from err
    return config, tensors


def load_noise_generator(
    directory: str | os.PathLike,
    hidden_size: Optional[int] = None,
    base_model_type: Optional[str] = None,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> NoiseGenerator:
    """Build a ``NoiseGenerator`` from a checkpoint folder, checking it fits a model of ``hidden_size``."""
    config, tensors = load_noise_generator_state(directory)
    check_generator_fits(config, str(directory), hidden_size, base_model_type)
    generator = NoiseGenerator(config)
    load_generator_weights(generator, tensors, source=str(directory))
    if device is not None or dtype is not None:
        generator.to(device=device, dtype=dtype)
    return generator


def load_generator_weights(generator: NoiseGenerator, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``generator`` strictly: every key present, no extra key, every shape equal."""
    own = generator.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"The noise generator weights in {source} do not match a '{generator.config.kind}' generator: "
            f"missing {missing}, unexpected {unexpected}."
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(
                f"The noise generator tensor {name!r} in {source} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[name].shape)}."
            )
    generator.load_state_dict(dict(tensors), strict=True)


def restore_generator(model: nn.Module, directory: str | os.PathLike) -> str:
    """Copy the generator-only checkpoint in ``directory`` into the generator inside ``model`` (through peft wrappers),
    strictly: the model must have a generator with the same settings (all but ``INFERENCE_ONLY``; else
    ``GeneratorSettingsChanged`` names each). Returns the generator's module name in ``model``."""
    config, tensors = load_noise_generator_state(directory)
    generator = find_noise_generator(model)
    if generator is None:
        raise ValueError(f"{directory} holds a noise generator but the model has none to load it into.")
    changes = changed_settings(config, generator.config)
    if changes:
        raise GeneratorSettingsChanged(str(directory), changes)
    reference = next(generator.parameters(), None)
    if reference is not None:
        tensors = {name: t.to(device=reference.device, dtype=reference.dtype) for name, t in tensors.items()}
    load_generator_weights(generator, tensors, source=str(directory))
    return module_name_of(model, generator)
