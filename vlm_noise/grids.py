"""Which patch grid the first image's tokens form, per family (for noise maps), where the family makes it knowable.

The first ``rows * cols`` image tokens of a sample must be that grid in row-major order: one square grid for
LLaVA, PaliGemma and Gemma 3 (after its pooling), the base image for LLaVA-NeXT / OneVision (its anyres tiles come
after), the merged patch grid for the Qwen-VL families and Mistral 3, and the single tile of Idefics3 / SmolVLM /
InternVL when the image was not split into tiles.
"""

from __future__ import annotations

import math

from mung.backbones import EncodedPrompt


def _square_tower(config) -> tuple[int, int]:
    vision = config.vision_config
    size, patch = vision.image_size, vision.patch_size
    side = (size[0] if isinstance(size, (list, tuple)) else size) // (patch[0] if isinstance(patch, (list, tuple)) else patch)
    return side, side


def _qwen(config, encoded: EncodedPrompt, processor) -> tuple[int, int]:
    _, rows, cols = encoded.tensors["image_grid_thw"][0].tolist()
    merge = processor.image_processor.merge_size
    return rows // merge, cols // merge


def _mistral3(config, encoded: EncodedPrompt, processor) -> tuple[int, int]:
    height, width = encoded.tensors["image_sizes"][0].tolist()
    step = config.vision_config.patch_size * config.spatial_merge_size
    return height // step, width // step


def _pooled_square(tokens: int) -> tuple[int, int]:
    side = math.isqrt(tokens)
    return side, side


def _one_tile(count: int, family: str) -> None:
    if count != 1:
        raise ValueError(f"{family} split this image into {count} tiles; noise maps need one tile per image (turn "
                         "image splitting / cropping to patches off in the processor).")


def _idefics(config, encoded: EncodedPrompt, processor) -> tuple[int, int]:
    _one_tile(int(encoded.tensors["pixel_values"].shape[1]), config.model_type)
    return _pooled_square(processor.image_seq_len)


def _internvl(config, encoded: EncodedPrompt, processor) -> tuple[int, int]:
    _one_tile(int(encoded.tensors["pixel_values"].shape[0]), config.model_type)
    return _pooled_square(processor.image_seq_length)


GRIDS = {
    "llava": lambda config, encoded, processor: _square_tower(config),
    "llava_next": lambda config, encoded, processor: _square_tower(config),
    "llava_onevision": lambda config, encoded, processor: _square_tower(config),
    "paligemma": lambda config, encoded, processor: _square_tower(config),
    "gemma3": lambda config, encoded, processor: _pooled_square(config.mm_tokens_per_image),
    "qwen2_vl": _qwen,
    "qwen2_5_vl": _qwen,
    "qwen3_vl": _qwen,
    "mistral3": _mistral3,
    "idefics3": _idefics,
    "smolvlm": _idefics,
    "internvl": _internvl,
}


def image_grid(config, encoded: EncodedPrompt, processor) -> tuple[int, int]:
    """(rows, cols) of the first image's tokens in ``encoded`` (see the module docstring)."""
    grid = GRIDS.get(config.model_type)
    if grid is None:
        raise ValueError(f"Noise maps are not supported for {config.model_type!r}: its image tokens do not form one "
                         f"patch grid MuNG knows (supported: {', '.join(sorted(GRIDS))}).")
    return grid(config, encoded, processor)
