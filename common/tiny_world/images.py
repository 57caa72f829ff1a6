"""Rendering a scene to a PIL image: white or dark noisy background, flat-filled shapes."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from .presets import IMAGE_SIZE
from .scenes import Scene, Shape
from .vocabulary import COLOURS

# Noise is drawn in 4 x 4 pixel cells: it survives the vision towers' downscaling as texture, and PNG encodes it
# twice as fast as per-pixel noise.
NOISE_CELL = 4
NOISE_STD = 28.0
DARK_BASE = (15, 70)  # range of the per-image dark base level


def save_pngs(image_folder: str, items: list[tuple[str, Scene]]) -> None:
    """Renders and writes each (path relative to image_folder, scene); top-level so worker processes can run it."""
    for path, scene in items:
        # Level 1: several times faster than the default and barely larger on these flat images.
        render(scene).save(os.path.join(image_folder, path), format="PNG", compress_level=1)


def render(scene: Scene) -> Image.Image:
    image = _background(scene)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        _draw_shape(draw, shape)
    return image


def _background(scene: Scene) -> Image.Image:
    if scene.background == "white":
        return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    rng = np.random.default_rng(scene.noise_seed)
    base = rng.integers(DARK_BASE[0], DARK_BASE[1], size=3)
    cells = IMAGE_SIZE // NOISE_CELL
    noise = rng.normal(0.0, NOISE_STD, size=(cells, cells, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    pixels = pixels.repeat(NOISE_CELL, axis=0).repeat(NOISE_CELL, axis=1)
    return Image.fromarray(pixels)  # uint8 H×W×3 is RGB


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    fill = COLOURS[shape.colour]
    x, y, h = shape.x, shape.y, shape.half
    box = (x - h, y - h, x + h, y + h)
    if shape.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape.shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape.shape == "triangle":
        # Apex up; the centre (x, y) lies inside, so its pixel carries the fill colour like the other shapes.
        draw.polygon([(x, y - h), (x - h, y + h), (x + h, y + h)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape.shape!r}")
