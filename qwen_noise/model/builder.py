"""Loading Qwen2.5-VL + MuNG: the model config with its generator (``noise_config``), ``from_pretrained`` with the
loading report checked (``load_model``, used by training), and ``load_pretrained_model`` for inference over the
shared loader (``mung.loading``), which decides from the files what a folder holds (full model, LoRA adapter,
generator-only checkpoint).

Loading always checks transformers' loading report: only ``model.noise_generator.*`` may be missing (and only when
the generator is fresh, i.e. not restored from the folder), nothing may be unexpected. Training attaches a fresh
generator to a stock base on purpose: there transformers' MISSING table for it becomes one line ("noise generator:
new, ...", ``announce_new_generator``).
"""

import logging
import os
from typing import Optional

import torch
from transformers import AutoConfig, ProcessorMixin, Qwen2_5_VLConfig

from mung.load_report import HeldLoadReport
from mung.loading import LoadOptions, load, quantization_config
from noise_generator import NoiseGeneratorConfig, check_generator_fits, find_noise_generator

from .configuration import Qwen2_5_VLNoiseConfig
from .modeling import Qwen2_5_VLNoiseForConditionalGeneration

logger = logging.getLogger(__name__)

GENERATOR_PREFIX = "model.noise_generator."
# Never quantised: the generator and the vision tower (with its merger) stay in full precision.
QUANTIZATION_SKIP = ["noise_generator", "visual", "lm_head"]


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
    quant = quantization_config(bits, dtype, QUANTIZATION_SKIP)
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
    """Load any checkpoint for inference through the shared loader (``mung.loading.load``): ``(processor, model)``
    in eval mode. ``noise_mode`` (sample | mean | off) overrides the generator's stored ``inference_mode``."""
    options = LoadOptions(device=device, dtype=dtype, bits=4 if load_4bit else 8 if load_8bit else 16)
    loaded = load(model_path, model_base, options, noise_mode=noise_mode, merge_lora=merge_lora)
    generator = find_noise_generator(loaded.model)
    if generator is not None:
        generator.config.inference_mode = loaded.noise_mode
    return loaded.processor, loaded.model
