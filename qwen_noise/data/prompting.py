"""One rendering of chats and images for Qwen2.5-VL, shared by training, evaluation, the CLI and VLMEvalKit.

Training and inference prompts are built by the same code, so the model sees at test time exactly the token layout
it was tuned on: Qwen's chat template (default system prompt, ``<|im_start|>role\\n…<|im_end|>\\n``) with every
``<image>`` placeholder replaced by ``<|vision_start|>`` + one ``<|image_pad|>`` per merged patch + ``<|vision_end|>``.
"""

import os
from typing import Optional, Sequence

import torch
from PIL import Image
from qwen_vl_utils import fetch_image

from mung.images import ImageLoadError, load_image, to_rgb
from noise_generator import IGNORE_INDEX

IMAGE_PLACEHOLDER = "<image>"
# qwen-vl-utils refuses images whose long side is more than this many times the short side.
MAX_ASPECT_RATIO = 200
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
MM_TEXT, MM_IMAGE = 0, 1


def tokenize_conversation(
    turns: list[tuple[str, str]],
    image_token_counts: list[int],
    tokenizer,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int], list[int]]:
    """Render ``turns`` with Qwen's chat template; returns (input_ids, labels, mm_token_type_ids).

    Every ``<image>`` becomes ``<|vision_start|>`` + ``<|image_pad|>`` × (its token count) + ``<|vision_end|>``.
    Labels keep assistant content and its ``<|im_end|>``; the rest is -100. ``add_generation_prompt`` appends
    ``<|im_start|>assistant\n`` for inference (training and inference share this one rendering).
    """
    vision_start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    vision_end = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    input_ids: list[int] = []
    labels: list[int] = []
    types: list[int] = []

    def add(ids: list[int], supervised: bool = False, kind: int = MM_TEXT) -> None:
        input_ids.extend(ids)
        labels.extend(ids if supervised else [IGNORE_INDEX] * len(ids))
        types.extend([kind] * len(ids))

    def text(s: str) -> list[int]:
        return tokenizer.encode(s, add_special_tokens=False) if s else []

    counts = iter(image_token_counts)
    for role, content in [("system", system_prompt)] + list(turns):
        add([im_start] + text(f"{role}\n"))
        pieces = content.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if i > 0:
                add([vision_start])
                add([image_pad] * next(counts), kind=MM_IMAGE)
                add([vision_end])
            add(text(piece), supervised=role == "assistant")
        add([im_end], supervised=role == "assistant")
        add(text("\n"))
    if add_generation_prompt:
        add([im_start] + text("assistant\n"))
    return input_ids, labels, types


def encode_images(
    processor,
    images: Sequence[str | os.PathLike | Image.Image],
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    image_folder: Optional[str | os.PathLike] = None,
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Decode images with ``mung.images`` (the one decoding of every path: files under ``image_folder``, URLs, data
    URLs, PIL images), resize them with qwen-vl-utils (multiples of patch × merge, within min/max pixels) and run
    the image processor; returns ``(pixel_values, image_grid_thw)`` or ``(None, None)`` without images."""
    if not images:
        return None, None
    image_processor = processor.image_processor
    min_pixels = image_processor.size["shortest_edge"] if min_pixels is None else min_pixels
    max_pixels = image_processor.size["longest_edge"] if max_pixels is None else max_pixels
    loaded = []
    for image in images:
        name = "the given image" if isinstance(image, Image.Image) else str(image)[:200]
        image = to_rgb(image) if isinstance(image, Image.Image) else load_image(image, folder=image_folder)
        check_image_size(image, name)
        loaded.append(
            fetch_image(
                {"image": image, "min_pixels": min_pixels, "max_pixels": max_pixels},
                image_patch_size=image_processor.patch_size,
            )
        )
    encoded = image_processor(images=loaded, do_resize=False, return_tensors="pt")
    return encoded["pixel_values"], encoded["image_grid_thw"]


def check_image_size(image: Image.Image, name: str) -> None:
    """Zero-size images and aspect ratios beyond qwen-vl-utils' limit cannot be resized to multiples of 28 px."""
    width, height = image.size
    if min(width, height) < 1:
        raise ImageLoadError(f"image {name} has size {width}x{height}; replace it or remove the sample.")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageLoadError(
            f"image {name} is {width}x{height} (aspect ratio {ratio:.0f}); Qwen2.5-VL's resizing accepts at most "
            f"{MAX_ASPECT_RATIO}:1 (each side becomes a multiple of 28 px). Pad or crop the image, or remove the sample."
        )


def build_inference_inputs(
    processor,
    turns: list[tuple[str, str]],
    images: Sequence[str | os.PathLike | Image.Image] = (),
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    image_folder: Optional[str | os.PathLike] = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> dict[str, torch.Tensor]:
    """Model inputs (batch of one) for a chat ending in a user turn, with the assistant prompt appended.

    ``turns`` are (role, text) pairs, role ``user``/``assistant``; the texts hold one ``<image>`` per image.
    """
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for _, text in turns)
    if placeholders != len(images):
        raise ValueError(f"The chat has {placeholders} <image> placeholders for {len(images)} images.")
    pixel_values, grid = encode_images(processor, images, min_pixels, max_pixels, image_folder)
    merge = processor.image_processor.merge_size
    counts = [] if grid is None else (grid.prod(-1) // merge**2).tolist()
    input_ids, _, types = tokenize_conversation(
        turns, counts, processor.tokenizer, system_prompt=system_prompt, add_generation_prompt=True
    )
    inputs = {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "attention_mask": torch.ones(1, len(input_ids), dtype=torch.long),
        "mm_token_type_ids": torch.tensor([types], dtype=torch.int),
    }
    if pixel_values is not None:
        inputs["pixel_values"] = pixel_values
        inputs["image_grid_thw"] = grid
    return inputs
