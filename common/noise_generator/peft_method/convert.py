"""A project generator-only checkpoint (``noise_generator.safetensors`` + ``noise_generator_config.json``) as a MuNG
peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``) and back. Same tensors, same settings; only
the file layout and the key names change. A MuNG adapter with LoRA has no generator-only form (``lora_r > 0`` is
refused going back: keep the adapter, or ``merge_and_unload()`` and save the model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from ..config import NoiseGeneratorConfig
from ..generator import NoiseGenerator
from ..io import ADAPTER_CONFIG, is_mung_adapter_dir, load_noise_generator_state, save_noise_generator
from .config import RENAMED, MuNGConfig
from .layer import GENERATOR_DICT, LAYER_NAME
from .registration import mung_peft_type

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def decoder_name(base: str) -> str:
    """The qualified name of the language model's decoder in the VLM at ``base`` (built on the meta device from its
    config: no weights are read)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..model import module_name_of

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(base))
    return module_name_of(model, model.get_decoder())


def generator_to_adapter(generator_dir: str, base: str, out_dir: str) -> Path:
    """Write the generator-only checkpoint ``generator_dir`` as a MuNG adapter of the VLM at ``base`` into
    ``out_dir``; returns the adapter's weights path."""
    config, tensors = load_noise_generator_state(generator_dir)
    settings = {RENAMED.get(name, name): value for name, value in config.to_dict().items()}
    adapter = MuNGConfig(**settings, base_model_name_or_path=str(base))
    prefix = f"{PEFT_PREFIX}{decoder_name(base)}.{LAYER_NAME}.{GENERATOR_DICT}."
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / ADAPTER_WEIGHTS
    save_file({prefix + name: t.contiguous() for name, t in tensors.items()}, str(weights), metadata={"format": "pt"})
    adapter.save_pretrained(str(out))
    return weights


def adapter_to_generator(adapter_dir: str, out_dir: str) -> Path:
    """Write the generator of the MuNG adapter in ``adapter_dir`` as a generator-only checkpoint into ``out_dir``;
    returns its weights path."""
    mung_peft_type()  # the config's peft_type must be a member of peft's enum
    adapter = MuNGConfig.from_pretrained(adapter_dir)
    if adapter.lora_r:
        raise ValueError(f"{adapter_dir} is MuNG + LoRA (lora_r={adapter.lora_r}); a generator-only checkpoint has no "
                         "place for LoRA. Keep the adapter, or merge_and_unload() and save the model.")
    if adapter.hidden_size is None:
        raise ValueError(f"{adapter_dir}/{ADAPTER_CONFIG} has no hidden_size; save the adapter from a peft model.")
    marker = f".{LAYER_NAME}.{GENERATOR_DICT}."
    tensors = {key.split(marker, 1)[1]: t for key, t in load_file(os.path.join(adapter_dir, ADAPTER_WEIGHTS)).items()
               if marker in key}
    config: NoiseGeneratorConfig = adapter.generator_config()
    with torch.device("meta"):
        shapes = NoiseGenerator(config)  # only its tensor names and config are read
    return save_noise_generator(shapes, out_dir, state_dict=tensors)


def convert(source: str, out_dir: str, base: Optional[str] = None) -> tuple[str, Path]:
    """Convert ``source`` (either format) into the other one in ``out_dir``; returns (what was written, its
    weights path). A generator-only checkpoint needs ``base`` (the VLM the adapter will load onto)."""
    from ..io import is_noise_generator_dir

    if is_mung_adapter_dir(source):
        return "generator", adapter_to_generator(source, out_dir)
    if is_noise_generator_dir(source):
        if not base:
            raise ValueError(f"{source} is a generator-only checkpoint; pass --model-base (the VLM it was trained on) "
                             "to write it as a MuNG adapter of that model.")
        return "adapter", generator_to_adapter(source, base, out_dir)
    raise ValueError(f"{source} is neither a MuNG peft adapter ({ADAPTER_CONFIG} of peft_type MUNG) nor a "
                     "generator-only checkpoint (noise_generator.safetensors + noise_generator_config.json).")
