"""One loader for every Qwen2.5-VL + MuNG folder: full model, generator-only over a base, LoRA adapter over a base.

What a folder is, is decided from the files in it, never from its name:

- ``adapter_config.json``                          -> a (Q)LoRA/DoRA adapter over ``model_base`` (or the base the
                                                      adapter names); its generator files, if any, are loaded too.
- ``model.safetensors`` (or a sharded index)       -> a full model folder (stock Qwen2.5-VL or tuned, with or without a
                                                      generator in its config).
- ``noise_generator.safetensors`` and its config    -> a generator-only checkpoint over ``model_base``.

Loading always checks transformers' loading report: only ``model.noise_generator.*`` may be missing (and only when
the generator is fresh, i.e. not restored from the folder), nothing may be unexpected. Training attaches a fresh
generator to a stock base on purpose: there transformers' MISSING table for it becomes one line ("noise generator:
new, ...", ``announce_new_generator``).
"""

import json
import logging
import os
from pathlib import Path
from typing import Optional

import torch
from transformers import AutoConfig, AutoProcessor, BitsAndBytesConfig, ProcessorMixin, Qwen2_5_VLConfig

from noise_generator import (
    NoiseGeneratorConfig,
    check_generator_fits,
    is_noise_generator_dir,
    load_generator_weights,
    load_noise_generator_state,
)
from noise_generator.guards import looks_like_local_path
from noise_generator.load_report import HeldLoadReport
from noise_generator.training import find_noise_generator

from .configuration import Qwen2_5_VLNoiseConfig
from .modeling import Qwen2_5_VLNoiseForConditionalGeneration

logger = logging.getLogger(__name__)

GENERATOR_PREFIX = "model.noise_generator."
FULL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_CONFIG = "adapter_config.json"


def default_device_and_dtype(
    device: Optional[str | torch.device] = None, dtype: Optional[torch.dtype] = None
) -> tuple[torch.device, torch.dtype]:
    """CUDA if present (bf16 when supported, else fp16), otherwise CPU in float32."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    return device, dtype


def noise_config(
    model_path: str | os.PathLike, generator: Optional[NoiseGeneratorConfig | dict] = None
) -> Qwen2_5_VLNoiseConfig:
    """The model config of ``model_path`` as a ``Qwen2_5_VLNoiseConfig`` (a stock Qwen2.5-VL config is accepted).

    ``generator`` replaces the config's ``noise_generator`` entry when given (a dict or a NoiseGeneratorConfig).
    """
    config = AutoConfig.from_pretrained(model_path)
    if isinstance(config, Qwen2_5_VLNoiseConfig):
        pass
    elif isinstance(config, Qwen2_5_VLConfig):
        data = config.to_dict()
        data.pop("model_type", None)
        config = Qwen2_5_VLNoiseConfig(**data)
    else:
        raise ValueError(
            f"{model_path} holds a '{config.model_type}' model; qwen_noise needs a Qwen2.5-VL checkpoint "
            "(model_type qwen2_5_vl or qwen2_5_vl_noise)."
        )
    if generator is not None:
        if isinstance(generator, NoiseGeneratorConfig):
            generator = generator.to_dict()
        check_generator_fits(
            NoiseGeneratorConfig.from_dict(dict(generator)),
            str(model_path),
            hidden_size=config.text_config.hidden_size,
            base_model_type=Qwen2_5_VLConfig.model_type,
        )
        config.noise_generator = dict(generator)
    return config


def check_loading_info(info: dict, source: str, generator_may_be_missing: bool) -> None:
    """Raise unless the only missing weights are the (fresh) generator's and nothing is unexpected or mismatched."""
    missing = sorted(info.get("missing_keys", []))
    if generator_may_be_missing:
        missing = [key for key in missing if not key.startswith(GENERATOR_PREFIX)]
    unexpected = sorted(info.get("unexpected_keys", []))
    mismatched = sorted(str(item) for item in info.get("mismatched_keys", []))
    if missing or unexpected or mismatched:
        raise ValueError(
            f"Loading {source} did not match the model: missing {missing[:10]}{'…' if len(missing) > 10 else ''} "
            f"({len(missing)}), unexpected {unexpected[:10]} ({len(unexpected)}), mismatched {mismatched[:10]}. "
            "Is this a Qwen2.5-VL checkpoint of the same size? (A model class defined outside transformers needs "
            "its checkpoint key mapping registered: import qwen_noise.model first.)"
        )


def quantization_config(bits: int, compute_dtype: torch.dtype) -> Optional[BitsAndBytesConfig]:
    """bitsandbytes settings for ``bits`` 4 (NF4, double quant) or 8; the generator and merger stay unquantised."""
    if bits == 16:
        return None
    skip = ["noise_generator", "visual", "lm_head"]
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=skip,
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise ValueError(f"bits must be 4, 8 or 16, got {bits}.")


def load_model(
    model_path: str | os.PathLike,
    generator: Optional[NoiseGeneratorConfig | dict] = None,
    generator_may_be_missing: bool = True,
    dtype: torch.dtype = torch.float32,
    device_map: Optional[str | dict] = None,
    bits: int = 16,
    generator_restored: bool = False,
    announce_new_generator: bool = False,
    **kwargs,
) -> Qwen2_5_VLNoiseForConditionalGeneration:
    """``from_pretrained`` of a full folder as our class, with the loading report checked.

    ``generator`` attaches a (new or to-be-restored) generator; ``generator_may_be_missing`` says whether its weights
    may be absent from the folder (a stock base, or weights restored afterwards). ``generator_restored``: the caller
    loads the generator's weights right after, so transformers' MISSING report for them is held back.
    ``announce_new_generator`` (training): a new generator's missing weights are expected too; one line says so
    instead of the report.
    """
    config = noise_config(model_path, generator)
    quant = quantization_config(bits, dtype)
    announce = announce_new_generator and generator_may_be_missing and not generator_restored
    with HeldLoadReport((GENERATOR_PREFIX,) if generator_restored or announce else ()) as report:
        model, info = Qwen2_5_VLNoiseForConditionalGeneration.from_pretrained(
            model_path,
            config=config,
            dtype=dtype,
            device_map=device_map,
            quantization_config=quant,
            output_loading_info=True,
            **kwargs,
        )
    report.release_unless_expected(info)
    check_loading_info(info, str(model_path), generator_may_be_missing)
    new_tensors = [key for key in info.get("missing_keys", []) if key.startswith(GENERATOR_PREFIX)]
    if announce and new_tensors:
        logger.info(
            "noise generator: new, initialised with %s (%d tensors)", config.noise_generator.get("init"), len(new_tensors)
        )
    return model


def restore_generator(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Copy the generator-only checkpoint in ``directory`` into ``model``'s generator (strict)."""
    config, tensors = load_noise_generator_state(directory)
    generator = find_noise_generator(model)
    if generator is None:
        raise ValueError(f"{directory} holds a noise generator but the model has none to load it into.")
    if config.to_dict() != generator.config.to_dict():
        raise ValueError(
            f"The generator config in {directory} ({config.to_dict()}) differs from the model's "
            f"({generator.config.to_dict()})."
        )
    reference = next(generator.parameters(), None)
    if reference is not None:
        tensors = {name: t.to(device=reference.device, dtype=reference.dtype) for name, t in tensors.items()}
    load_generator_weights(generator, tensors, source=str(directory))


def describe_folder(model_path: str | os.PathLike) -> str:
    """'adapter', 'full' or 'generator' from the files in ``model_path``."""
    path = Path(model_path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--model-path {path} does not exist or is not a folder (only local checkpoints are supported; download "
            "the model first)."
        )
    if (path / ADAPTER_CONFIG).is_file():
        return "adapter"
    if any((path / name).is_file() for name in FULL_WEIGHT_FILES):
        return "full"
    if is_noise_generator_dir(path):
        return "generator"
    raise ValueError(
        f"{path} is neither a model folder ({' / '.join(FULL_WEIGHT_FILES)}), a LoRA adapter ({ADAPTER_CONFIG}) nor "
        "a noise generator checkpoint (noise_generator.safetensors + noise_generator_config.json)."
    )


def load_pretrained_model(
    model_path: str | os.PathLike,
    model_base: Optional[str | os.PathLike] = None,
    device: Optional[str | torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    merge_lora: bool = True,
    noise_mode: Optional[str] = None,
) -> tuple[ProcessorMixin, Qwen2_5_VLNoiseForConditionalGeneration]:
    """Load a model for inference: returns ``(processor, model)`` in eval mode.

    Args:
        model_path: a full model folder, a generator-only folder or an adapter folder (see the module docstring).
        model_base: the base model for generator-only and adapter folders (an adapter may name its own base).
        device, dtype: default CUDA/bf16 when present, else CPU/float32.
        load_8bit, load_4bit: bitsandbytes quantisation of the LLM (never the merger or generator).
        merge_lora: fold a LoRA adapter into the weights (not possible on a quantised model; then it stays).
        noise_mode: overrides the generator's ``inference_mode`` (sample | mean | off) for this session.
    """
    device, dtype = default_device_and_dtype(device, dtype)
    bits = 4 if load_4bit else 8 if load_8bit else 16
    device_map = {"": device.index if device.type == "cuda" and device.index is not None else device.type}
    kind = describe_folder(model_path)
    generator_dir = Path(model_path) if is_noise_generator_dir(model_path) else None
    generator_config = load_noise_generator_state(generator_dir)[0].to_dict() if generator_dir else None

    if kind == "full":
        has_config_generator = noise_config(model_path).noise_generator is not None
        model = load_model(
            model_path,
            generator=generator_config,
            generator_may_be_missing=generator_dir is not None or not has_config_generator,
            dtype=dtype,
            device_map=device_map,
            bits=bits,
            generator_restored=generator_dir is not None,
        )
        processor_source = model_path
    else:
        what = "LoRA adapter" if kind == "adapter" else "noise generator checkpoint"
        named_by_adapter = False
        if kind == "adapter" and model_base is None:
            with open(Path(model_path) / ADAPTER_CONFIG, encoding="utf-8") as handle:
                model_base = json.load(handle).get("base_model_name_or_path")
            named_by_adapter = model_base is not None
        if model_base is None:
            raise ValueError(f"{model_path} is a {what} without the base weights; pass --model-base <Qwen2.5-VL folder>.")
        if looks_like_local_path(model_base) and not Path(model_base).is_dir():
            source = f"the base named in {Path(model_path) / ADAPTER_CONFIG}" if named_by_adapter else "--model-base"
            raise FileNotFoundError(
                f"{model_path} is a {what}; {source} ({model_base}) does not exist here. Pass the Qwen2.5-VL folder it "
                "was trained on as --model-base."
            )
        model = load_model(
            model_base,
            generator=generator_config,
            generator_may_be_missing=True,
            dtype=dtype,
            device_map=device_map,
            bits=bits,
            generator_restored=generator_dir is not None,
        )
        if kind == "adapter":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(model_path))
            if merge_lora and bits == 16:
                model = model.merge_and_unload()
        processor_source = model_path if (Path(model_path) / "preprocessor_config.json").is_file() or (
            Path(model_path) / "processor_config.json"
        ).is_file() else model_base
    if generator_dir is not None:
        restore_generator(model, generator_dir)
    processor = AutoProcessor.from_pretrained(processor_source)
    if not isinstance(processor, ProcessorMixin):
        raise ValueError(f"{processor_source} has no Qwen2.5-VL processor (only a tokenizer was found).")
    generator = find_noise_generator(model)
    if generator is not None and noise_mode is not None:
        generator.config.inference_mode = noise_mode
        generator.config.validate()
    model.eval()
    return processor, model
