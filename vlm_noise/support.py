"""Which transformers VLMs the generic backbone serves, and why it refuses the others.

Served: every ``model_type`` that ``AutoModelForImageTextToText`` knows, whose config names an image placeholder
token (``image_token_id`` / ``image_token_index``) and whose images enter at those placeholder rows of the language
model's ``inputs_embeds``. ``VERIFIED`` lists the families MuNG's tests run (tiny checkpoints in
``tiny_world.families``); others that pass the checks are served with a warning.
"""

from __future__ import annotations

import logging
from typing import Optional

import transformers
from transformers import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

logger = logging.getLogger(__name__)

VERIFIED = (
    "gemma3", "idefics3", "internvl", "llava", "llava_next", "llava_onevision", "mistral3", "paligemma",
    "qwen2_5_vl", "qwen2_vl", "qwen3_vl", "smolvlm",
)
# Families whose images do not enter at placeholder rows of the decoder's inputs (checked on transformers 5.23).
NOT_AT_PLACEHOLDER_ROWS = {
    "mllama": "its images enter through cross-attention layers, not at placeholder rows of the decoder's inputs",
    "idefics": "its images enter through gated cross-attention layers, not at placeholder rows of the decoder's inputs",
    "llama4": "its language_model is a causal-LM head model with no base decoder whose inputs could be noised",
}


def image_token_id(config) -> Optional[int]:
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def refusal(config: dict) -> Optional[str]:
    """Why the generic backbone cannot serve a checkpoint with this ``config.json`` (None: it can)."""
    model_type = config.get("model_type")
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return (f"model_type {model_type!r} is not an image-text-to-text model of transformers "
                f"{transformers.__version__} (AutoModelForImageTextToText does not know it)")
    if model_type in NOT_AT_PLACEHOLDER_ROWS:
        return f"model_type {model_type!r}: {NOT_AT_PLACEHOLDER_ROWS[model_type]}"
    parsed = CONFIG_MAPPING[model_type].from_dict({k: v for k, v in config.items() if k != "model_type"})
    if image_token_id(parsed) is None:
        return (f"model_type {model_type!r} has no image placeholder token (image_token_id) in its config; MuNG "
                "finds the image rows by that token")
    return None


def warn_if_unverified(model_type: str) -> None:
    if model_type not in VERIFIED:
        logger.warning("model_type %r is served by the generic MuNG backbone but not verified by its tests (verified: "
                       "%s).", model_type, ", ".join(VERIFIED))


# Where the vision encoder sits in the inner model (``model.model``) of the families, and the parts inside it that
# connect it to the language model (Qwen-VL's mergers live in ``visual``): what ``--tune full`` keeps frozen.
VISION_ENCODERS = ("vision_tower", "vision_model", "visual")
CONNECTORS_IN_ENCODER = ("merger", "deepstack_merger_list")


def vision_encoder(model) -> tuple[Optional[object], list]:
    """(the vision encoder module of ``model``, the connector modules inside it), or (None, []) when unknown."""
    inner = getattr(model, "model", None)
    for name in VISION_ENCODERS:
        encoder = getattr(inner, name, None)
        if encoder is not None:
            return encoder, [getattr(encoder, part) for part in CONNECTORS_IN_ENCODER if hasattr(encoder, part)]
    return None, []
