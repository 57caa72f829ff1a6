"""Helpers between raw inputs and the model: image preprocessing and prompt tokenisation (plus LLaVA's names for the
shared model-naming and stopping helpers)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from PIL import Image

from mung.generation import StopStringCriteria
from mung.loading import model_name_from_path

from .constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX


# --- images ------------------------------------------------------------------------------------------------
def expand2square(image: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """Pad ``image`` to a square (centred) with ``background_color``."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background_color)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def _mean_colour(image_processor: Any) -> tuple[int, ...]:
    return tuple(int(round(x * 255)) for x in image_processor.image_mean)


def process_images(images: Sequence[Image.Image], image_processor: Any, model_cfg: Any) -> torch.Tensor:
    """Pixel values ``[N, 3, H, W]`` for ``images``; ``model_cfg.image_aspect_ratio == "pad"`` pads them to squares
    with the processor's mean colour first (LLaVA-1.5), otherwise the processor resizes/crops as it likes."""
    aspect = getattr(model_cfg, "image_aspect_ratio", None)
    if aspect == "pad":
        colour = _mean_colour(image_processor)
        images = [expand2square(img.convert("RGB"), colour) for img in images]
    elif aspect not in (None, "square", "resize", "original"):
        raise ValueError(f"image_aspect_ratio={aspect!r} is not supported; use 'pad' or leave it unset.")
    return image_processor(images=list(images), return_tensors="pt")["pixel_values"]


# --- text ------------------------------------------------------------------------------------------------------
def _bos_prefix(tokenizer: Any) -> list[int]:
    """The BOS id to start a prompt with, if the tokenizer has one (LlamaTokenizer in transformers 5 does not add it)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if bos is not None else []


def tokenize_image_prompt(
    prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX, with_offsets: bool = False
) -> tuple[list[int], Optional[list[tuple[int, int]]]]:
    """Token ids of ``prompt`` with every ``<image>`` as ``image_token_index`` and BOS in front (when the tokenizer
    has a BOS token). Text between images is tokenised piece by piece, as LLaVA always did.

    With ``with_offsets`` also returns each token's (start, end) character span in ``prompt`` (BOS: (0, 0)); that
    needs a fast tokenizer.
    """
    ids: list[int] = list(_bos_prefix(tokenizer))
    offsets: Optional[list[tuple[int, int]]] = [(0, 0)] * len(ids) if with_offsets else None
    position = 0
    chunks = prompt.split(DEFAULT_IMAGE_TOKEN)
    for k, chunk in enumerate(chunks):
        if k > 0:
            ids.append(image_token_index)
            if offsets is not None:
                offsets.append((position, position + len(DEFAULT_IMAGE_TOKEN)))
            position += len(DEFAULT_IMAGE_TOKEN)
        if chunk:
            if with_offsets:
                if not getattr(tokenizer, "is_fast", False):
                    raise ValueError(
                        f"{type(tokenizer).__name__} cannot report character offsets; training needs a fast tokenizer."
                    )
                enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
                ids.extend(enc["input_ids"])
                offsets.extend((position + a, position + b) for a, b in enc["offset_mapping"])
            else:
                ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
        position += len(chunk)
    return ids, offsets


def tokenizer_image_token(
    prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX, return_tensors: Optional[str] = None
) -> list[int] | torch.Tensor:
    """Token ids of ``prompt`` with ``<image>`` → ``image_token_index`` (−200) and BOS first; ``return_tensors="pt"``
    gives a 1-D LongTensor."""
    ids, _ = tokenize_image_prompt(prompt, tokenizer, image_token_index)
    if return_tensors is None:
        return ids
    if return_tensors == "pt":
        return torch.tensor(ids, dtype=torch.long)
    raise ValueError(f"Unsupported return_tensors={return_tensors!r}; use 'pt' or None.")


# LLaVA's names for the shared helpers, kept so code written against ``llava.mm_utils`` works unchanged.
get_model_name_from_path = model_name_from_path


class KeywordsStoppingCriteria(StopStringCriteria):
    """LLaVA's signature (``keywords, tokenizer, input_ids``) for ``mung.generation.StopStringCriteria``."""

    def __init__(self, keywords: Sequence[str], tokenizer: Any, input_ids: Optional[torch.Tensor] = None):
        super().__init__(keywords, tokenizer)
