"""Qwen2.5-VL + MuNG model classes, registered with transformers' Auto classes and checkpoint key mapping."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming

from .configuration import Qwen2_5_VLNoiseConfig
from .modeling import (
    Qwen2_5_VLNoiseForConditionalGeneration,
    Qwen2_5_VLNoiseModel,
    Qwen2_5_VLNoisePreTrainedModel,
)


def _register_with_transformers() -> None:
    """Make Auto* and the checkpoint key mapping know our classes (idempotent).

    Qwen2.5-VL checkpoints on the hub (and those transformers itself writes) use the legacy key layout
    (``model.layers.*``, ``visual.*``); transformers maps them by class name, and a class defined outside
    transformers gets no mapping, so every LLM weight would load as missing. Our mapping is the stock one with
    ``model.noise_generator.*`` kept where it is.
    """
    AutoConfig.register(Qwen2_5_VLNoiseConfig.model_type, Qwen2_5_VLNoiseConfig, exist_ok=True)
    AutoModel.register(Qwen2_5_VLNoiseConfig, Qwen2_5_VLNoiseModel, exist_ok=True)
    AutoModelForImageTextToText.register(Qwen2_5_VLNoiseConfig, Qwen2_5_VLNoiseForConditionalGeneration, exist_ok=True)
    register_checkpoint_conversion_mapping(
        Qwen2_5_VLNoiseForConditionalGeneration.__name__,
        [
            WeightRenaming(source_patterns=r"^visual", target_patterns="model.visual"),
            WeightRenaming(
                source_patterns=r"^model(?!\.(language_model|visual|noise_generator))",
                target_patterns="model.language_model",
            ),
        ],
        overwrite=True,
    )


_register_with_transformers()

__all__ = [
    "Qwen2_5_VLNoiseConfig",
    "Qwen2_5_VLNoiseForConditionalGeneration",
    "Qwen2_5_VLNoiseModel",
    "Qwen2_5_VLNoisePreTrainedModel",
]
