"""One loader for every backbone and every checkpoint kind.

``load(model_path, model_base)`` decides from the files what ``model_path`` holds (``checkpoints.checkpoint_kind``)
and which backbone serves it (the ``model_type`` of its config, else of the base's), then:

1. the backbone loads the weights (the folder itself, or the base for LoRA / projector-only / generator-only runs)
   with the generator the checkpoint describes;
2. the checkpoint's own files are restored strictly: ``mm_projector.bin``, ``non_lora_trainables.bin``, the
   generator files, then the peft adapter (merged unless the model is quantised or ``merge_lora=False``; a MuNG
   adapter's merge attaches its generator the ``noise_generator.attach`` way, see ``noise_generator.peft_method``);
3. every weight the first step reported missing must have been restored by the second, else loading fails
   naming them (transformers' MISSING report for restorable weights is held back until then);
4. the backbone finishes the model (e.g. its vision tower) and loads its tokenizer/processor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import BitsAndBytesConfig

from noise_generator import CONFIG_NAME as NOISE_GENERATOR_CONFIG_FILE
from noise_generator import NoiseGeneratorConfig, is_noise_generator_dir, load_noise_generator_state, restore_generator

from . import backbones as registry
from .backbones import Backbone
from .checkpoints import (
    ADAPTER_CONFIG_FILE,
    NON_LORA_FILE,
    PROJECTOR_FILE,
    checkpoint_kind,
    has_processor_files,
    load_named_tensors,
    read_tensor_file,
)
from .load_report import HeldLoadReport
from .noise_modes import resolve_noise_mode
from .paths import looks_like_local_path, missing_reason
from .safe_pickles import check_weight_pickles

logger = logging.getLogger(__name__)


@dataclass
class LoadOptions:
    """How to place the model: ``device`` (default CUDA when present), ``dtype`` (default bf16 on GPUs that have it,
    else fp16; float32 on CPU), ``bits`` 4/8 (bitsandbytes, never the generator or vision parts), attention kernel."""

    device: Optional[str | torch.device] = None
    dtype: Optional[torch.dtype] = None
    bits: int = 16
    attn_implementation: Optional[str] = None
    device_map: Any = None

    def __post_init__(self) -> None:
        if self.bits not in (4, 8, 16):
            raise ValueError(f"bits must be 4, 8 or 16, got {self.bits}.")
        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(self.device)
        if self.dtype is None:
            if self.device.type == "cuda":
                self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.dtype = torch.float32
        if self.device_map is None:
            index = self.device.index if self.device.type == "cuda" and self.device.index is not None else self.device.type
            self.device_map = {"": index}

    def from_pretrained_kwargs(self, skip_modules: list[str]) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained``: dtype, device map, quantisation, attention kernel."""
        kwargs: dict[str, Any] = {"dtype": self.dtype, "device_map": self.device_map}
        quantization = quantization_config(self.bits, self.dtype, skip_modules)
        if quantization is not None:
            kwargs["quantization_config"] = quantization
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs


def quantization_config(bits: int, compute_dtype: torch.dtype, skip_modules: list[str],
                        double_quant: bool = True, quant_type: str = "nf4") -> Optional[BitsAndBytesConfig]:
    """bitsandbytes settings for ``bits`` 4 (NF4, double quantisation) or 8; ``skip_modules`` stay unquantised."""
    if bits == 16:
        return None
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                                  bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute_dtype,
                                  llm_int8_skip_modules=skip_modules)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    raise ValueError(f"bits must be 4, 8 or 16, got {bits}.")


def check_loading_info(info: dict, source: str) -> list[str]:
    """Raise when ``from_pretrained`` met weights the model does not have or of another shape; returns the missing
    ones (the loader checks they are restored from the checkpoint's own files)."""
    unexpected = sorted(info.get("unexpected_keys", []))
    mismatched = sorted(str(item) for item in info.get("mismatched_keys", []))
    if unexpected or mismatched:
        raise ValueError(
            f"Loading {source} did not match the model: unexpected weights {unexpected[:10]} ({len(unexpected)}), "
            f"mismatched shapes {mismatched[:10]} ({len(mismatched)}). Is it a checkpoint of this model family and "
            "size?"
        )
    return sorted(info.get("missing_keys", []))


@dataclass
class LoadedModel:
    """A model ready to answer: the backbone that serves it, the model (eval mode), its tokenizer and processor,
    the context length, a display name, and the resolved noise mode (``off`` without a generator)."""

    backbone: Backbone
    model: torch.nn.Module
    tokenizer: Any
    processor: Any
    context_len: int
    model_name: str
    noise_mode: str
    noise_mode_source: str = "checkpoint"
    template: Optional[str] = None
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        weight = self.model.get_input_embeddings().weight
        return weight.dtype if weight.dtype.is_floating_point else torch.float32

    @property
    def noise_label(self) -> str:
        """The noise mode as answer records state it (``mean (checkpoint default)``, ``off (no generator)``)."""
        if self.noise_mode_source == "flag":
            return self.noise_mode
        return f"{self.noise_mode} ({'no generator' if self.noise_mode_source == 'none' else 'checkpoint default'})"


def model_name_from_path(model_path: str) -> str:
    """``.../llava-v1.5-7b`` → ``llava-v1.5-7b``; ``.../run/checkpoint-500`` → ``run_checkpoint-500``."""
    parts = os.path.normpath(model_path).split(os.sep)
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return parts[-2] + "_" + parts[-1]
    return parts[-1]


def _base_for(model_path: Path, model_base: Optional[str], kind: str) -> str:
    """The base a LoRA / projector-only / generator-only checkpoint needs (an adapter may name its own)."""
    named_by_adapter = False
    if model_base is None and kind in ("lora", "mung"):
        config = json.loads((model_path / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
        model_base = config.get("base_model_name_or_path")
        named_by_adapter = model_base is not None
    what = {"lora": "LoRA", "mung": "MuNG adapter", "projector": "projector-only", "generator": "generator-only"}[kind]
    if not model_base:
        raise ValueError(
            f"{model_path} is a {what} checkpoint without the base weights; pass the model it was trained on as "
            "--model-base."
        )
    reason = missing_reason(model_base, "folder") if looks_like_local_path(model_base) else ""
    if reason:
        if reason in ("does not exist", "is a file, not a folder"):
            reason = "does not exist or is not a folder"
        source = f"the base named in {model_path / ADAPTER_CONFIG_FILE}" if named_by_adapter else "--model-base"
        raise FileNotFoundError(
            f"{model_path} is a {what} checkpoint; {source} ({model_base}) {reason}. Pass the folder of the model it "
            "was trained on as --model-base."
        )
    return model_base


def _backbone_for(model_path: Path, base: Optional[str], generator: Optional[NoiseGeneratorConfig]) -> Backbone:
    for folder in (model_path, base):
        config = registry.read_config(folder) if folder else None
        if config is not None:
            return registry.for_config(config, f"{folder}/config.json")
    if generator is not None and generator.base_model_type:
        return registry.for_config({"model_type": generator.base_model_type}, f"{model_path}/noise_generator_config.json")
    raise ValueError(f"Cannot tell which backbone {model_path} belongs to: neither it nor its base has a config.json.")


def _restore(model: torch.nn.Module, backbone: Backbone, path: Path, kind: str, generator_files: bool) -> list[str]:
    """Step 2 before the adapter: projector and non-LoRA tensors, then the generator. Returns restored name prefixes."""
    restored: list[str] = []
    if kind == "projector":
        restored += backbone.load_projector(model, path / PROJECTOR_FILE) or []
    if kind == "lora" and (path / NON_LORA_FILE).is_file():
        tensors = read_tensor_file(path / NON_LORA_FILE)
        restored += load_named_tensors(model, tensors, str(path / NON_LORA_FILE))
    if generator_files:
        restored.append(restore_generator(model, path) + ".")
    return restored


def _check_all_restored(missing: list[str], restored: list[str], path: Path, report: HeldLoadReport) -> None:
    left = [key for key in missing if not any(key == r or key.startswith(r) for r in restored)]
    if left:
        report.release()
        raise ValueError(
            f"Loading {path}: weights missing from the checkpoint and not restored by its files: {left[:10]}"
            f"{' ...' if len(left) > 10 else ''} ({len(left)}). Is the checkpoint complete and --model-base the model "
            "it was trained on?"
        )
    report.discard()


def _check_files(path: Path, base: Optional[str]) -> None:
    """Before any weights load: pickle weight files hold tensors only, and a ``noise_generator`` entry of a
    ``config.json`` is a valid generator config (errors name the file and the setting)."""
    for folder in (path, base):
        if folder is None or not Path(folder).is_dir():
            continue
        check_weight_pickles(folder)
        entry = (registry.read_config(folder) or {}).get("noise_generator")
        source = f"{Path(folder) / 'config.json'} (noise_generator)"
        if entry is not None and not isinstance(entry, dict):
            raise ValueError(f"{source} is a {type(entry).__name__}, expected an object of generator settings.")
        if entry is not None:
            NoiseGeneratorConfig.from_dict(dict(entry), source=source)


def check_generator_configs_agree(folder: Path) -> None:
    """A folder holding both a ``noise_generator`` entry in its ``config.json`` and generator files must describe one
    generator: every setting is compared (a base model type missing on one side excepted), and a disagreement is
    refused naming both files and each setting, rather than loading with one of them silently."""
    entry = (registry.read_config(folder) or {}).get("noise_generator")
    if not isinstance(entry, dict) or not is_noise_generator_dir(folder):
        return
    in_config = NoiseGeneratorConfig.from_dict(dict(entry), source=f"{folder / 'config.json'} (noise_generator)")
    file = folder / NOISE_GENERATOR_CONFIG_FILE
    in_file = NoiseGeneratorConfig.from_json_file(file)
    differences = [f"{spec.name}: {getattr(in_config, spec.name)!r} vs {getattr(in_file, spec.name)!r}"
                   for spec in dataclasses.fields(in_config)
                   if getattr(in_config, spec.name) != getattr(in_file, spec.name)
                   and not (spec.name == "base_model_type" and None in (getattr(in_config, spec.name),
                                                                        getattr(in_file, spec.name)))]
    if differences:
        raise ValueError(
            f"{folder / 'config.json'} (noise_generator) and {file} describe different generators "
            f"({'; '.join(differences)}, config.json first). Re-save the checkpoint, or remove the stale one of the "
            "two."
        )


def _load_adapter(model: torch.nn.Module, path: Path, kind: str, merge: bool) -> torch.nn.Module:
    """The peft adapter in ``path`` on ``model``, merged when ``merge`` (a MuNG adapter: LoRA merged, the generator
    attached as ``noise_generator.attach`` does)."""
    from peft import PeftModel

    if kind == "mung":
        import noise_generator.peft_method  # noqa: F401  (registers the MuNG method with peft)
    logger.info("Loading the %s of %s", "MuNG adapter" if kind == "mung" else "LoRA adapter", path)
    model = PeftModel.from_pretrained(model, str(path))
    return model.merge_and_unload() if merge else model


def load(
    model_path: str | os.PathLike,
    model_base: Optional[str] = None,
    options: Optional[LoadOptions] = None,
    noise_mode: Optional[str] = None,
    merge_lora: bool = True,
    template: Optional[str] = None,
) -> LoadedModel:
    """Load any checkpoint of any installed backbone for inference (see the module docstring)."""
    options = options or LoadOptions()
    path = Path(os.path.expanduser(str(model_path)))
    kind = checkpoint_kind(path)
    check_generator_configs_agree(path)
    generator_files = is_noise_generator_dir(path)
    generator = load_noise_generator_state(path)[0] if generator_files else None
    base = None if kind == "full" else _base_for(path, model_base, kind)
    _check_files(path, base)
    backbone = _backbone_for(path, base, generator)
    backbone.check_template(template)
    config_source = str(path) if registry.read_config(path) is not None else base
    with HeldLoadReport(backbone.restorable) as report:
        model, missing = backbone.load_weights(str(path) if kind == "full" else base, config_source, generator, options)
    restored = _restore(model, backbone, path, kind, generator_files)
    _check_all_restored(missing, restored, path, report)
    if kind in ("lora", "mung"):
        model = _load_adapter(model, path, kind, merge_lora and options.bits == 16)
    backbone.finish(model, options)
    processor_source = str(path) if has_processor_files(path) else base
    tokenizer, processor = backbone.load_processor(processor_source, model)
    mode, source = resolve_noise_mode(model, noise_mode)
    model.eval()
    loaded = LoadedModel(backbone=backbone, model=model, tokenizer=tokenizer, processor=processor,
                         context_len=backbone.context_length(model), model_name=model_name_from_path(str(path)),
                         noise_mode=mode, noise_mode_source=source, template=template, path=str(path))
    if loaded.template is None:
        loaded.template = backbone.default_template(loaded)
    return loaded
