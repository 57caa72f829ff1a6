"""MuNG's Multimodal Noise Generator, shared by the LLaVA-1.5 and Qwen2.5-VL backbones.

Layout (as a small PEFT-style tuner): ``config`` (NoiseGeneratorConfig), ``generator`` (the module and its math),
``injection`` (helpers the backbones use to plug it in) and ``io`` (save/load/validate checkpoints).
"""

from .config import CONFIG_NAME, INITS, INJECTIONS, KINDS, MODES, NoiseGeneratorConfig
from .generator import NoiseGenerator, NoiseOutput
from .injection import IGNORE_INDEX, noise_draws, repeat_for_noise_samples, scale_num_items, text_key_mask
from .model import CapturedNoise, capture_noise, find_noise_generator, module_name_of
from .io import (
    WEIGHTS_NAME,
    check_generator_fits,
    count_parameters,
    describe_trainable,
    is_noise_generator_dir,
    load_generator_weights,
    load_noise_generator,
    load_noise_generator_state,
    save_noise_generator,
)

__all__ = [
    "CONFIG_NAME",
    "CapturedNoise",
    "IGNORE_INDEX",
    "INITS",
    "INJECTIONS",
    "KINDS",
    "MODES",
    "NoiseGenerator",
    "NoiseGeneratorConfig",
    "NoiseOutput",
    "WEIGHTS_NAME",
    "capture_noise",
    "check_generator_fits",
    "count_parameters",
    "describe_trainable",
    "find_noise_generator",
    "is_noise_generator_dir",
    "load_generator_weights",
    "load_noise_generator",
    "load_noise_generator_state",
    "module_name_of",
    "noise_draws",
    "repeat_for_noise_samples",
    "save_noise_generator",
    "scale_num_items",
    "text_key_mask",
]
