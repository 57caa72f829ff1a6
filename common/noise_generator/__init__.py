"""MuNG's Multimodal Noise Generator, shared by the LLaVA-1.5 and Qwen2.5-VL backbones.

Layout (as a PEFT tuner): ``config`` (NoiseGeneratorConfig), ``generator`` (the module and its math), ``model``
(putting it into a model: the mixin every backbone's model uses, the key rule, the m-draw rule, finding it again),
``attach`` (putting it into any transformers VLM with hooks: the generic backbone) and ``io`` (generator-only
checkpoints). It imports nothing of the app layer (``mung``) or the backbones; the training plumbing around it lives
in ``mung.training``.

``peft_method`` is MuNG as a peft method (``MuNGConfig``); importing it registers the method with peft. Importing
this package registers it too: at once when peft is already imported, else the moment peft is
(``peft_import_hook``); peft (and transformers) stay unimported here, which keeps ``import noise_generator``
light.
"""

import sys

from .config import (
    CONFIG_NAME,
    INFERENCE_ONLY,
    INITS,
    INJECTIONS,
    KINDS,
    MODES,
    GeneratorSettingsChanged,
    InvalidSetting,
    NoiseGeneratorConfig,
    changed_settings,
)
from .generator import NoiseGenerator, NoiseOutput, PaddedNoiseOutput
from .model import (
    IGNORE_INDEX,
    CapturedNoise,
    NoiseDraws,
    NoiseGeneratorMixin,
    build_noise_generator,
    capture_noise,
    find_noise_generator,
    mask_positions,
    module_name_of,
    rows_at_mask,
    text_key_mask,
)
from .attach import (
    GENERATOR_PREFIX,
    NoiseAttachment,
    attach,
    attach_from_config,
    attach_pretrained,
    attachment_of,
    detach,
    mean_loss_over_draws,
    noise_mode,
    saved_generator_tensors,
)
from .io import (
    WEIGHTS_NAME,
    check_generator_fits,
    is_mung_adapter_dir,
    is_noise_generator_dir,
    load_generator_weights,
    load_noise_generator,
    load_noise_generator_state,
    restore_generator,
    save_noise_generator,
)

if "peft" in sys.modules:
    from . import peft_method  # noqa: F401  (registers MuNG with the peft already in use)
else:
    from .peft_import_hook import register_when_peft_loads

    register_when_peft_loads()  # so `import noise_generator` then `import peft` loads MuNG adapters too


def __getattr__(name: str):
    if name in ("MuNGConfig", "peft_method"):
        import importlib

        peft_method = importlib.import_module(".peft_method", __name__)
        return peft_method if name == "peft_method" else peft_method.MuNGConfig
    raise AttributeError(f"module 'noise_generator' has no attribute {name!r}")


__all__ = [
    "MuNGConfig",
    "GENERATOR_PREFIX",
    "NoiseAttachment",
    "attach",
    "attach_from_config",
    "attach_pretrained",
    "attachment_of",
    "detach",
    "mean_loss_over_draws",
    "noise_mode",
    "saved_generator_tensors",
    "CONFIG_NAME",
    "CapturedNoise",
    "GeneratorSettingsChanged",
    "INFERENCE_ONLY",
    "IGNORE_INDEX",
    "INITS",
    "INJECTIONS",
    "InvalidSetting",
    "KINDS",
    "MODES",
    "NoiseDraws",
    "NoiseGeneratorMixin",
    "NoiseGenerator",
    "NoiseGeneratorConfig",
    "NoiseOutput",
    "PaddedNoiseOutput",
    "WEIGHTS_NAME",
    "build_noise_generator",
    "capture_noise",
    "changed_settings",
    "check_generator_fits",
    "find_noise_generator",
    "is_mung_adapter_dir",
    "is_noise_generator_dir",
    "load_generator_weights",
    "load_noise_generator",
    "load_noise_generator_state",
    "module_name_of",
    "mask_positions",
    "rows_at_mask",
    "restore_generator",
    "save_noise_generator",
    "text_key_mask",
]
