"""Draw where the generator puts its noise: per-patch ‖μ‖ and mean σ over the image (the paper's figure).

Backbone-independent pieces: ``capture_noise`` records the generator's output during any forward pass, and
``render_overlay`` paints per-patch values over the image. The backbones' ``visualize`` entry points
(``python -m llava_noise.visualize`` / ``python -m qwen_noise.visualize``) only add loading and preprocessing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from PIL import Image

from .generator import NoiseGenerator, NoiseOutput
from .training import find_noise_generator


@dataclass
class CapturedNoise:
    """The generator outputs seen while the context was open (one per generator call)."""

    outputs: list[NoiseOutput]

    def last(self) -> NoiseOutput:
        if not self.outputs:
            raise RuntimeError("The model ran without calling its noise generator; nothing to visualise.")
        return self.outputs[-1]


@contextlib.contextmanager
def capture_noise(model: torch.nn.Module, mode: str = "mean") -> Iterator[CapturedNoise]:
    """Record every generator call inside the block, forcing noise ``mode`` for those calls."""
    generator: Optional[NoiseGenerator] = find_noise_generator(model)
    if generator is None:
        raise ValueError("This model has no noise generator (its config has no 'noise_generator' entry).")
    captured = CapturedNoise(outputs=[])
    original_forward = generator.forward

    def forward_with_mode(*args, **kwargs):
        kwargs["mode"] = mode
        output = original_forward(*args, **kwargs)
        captured.outputs.append(output)
        return output

    generator.forward = forward_with_mode
    try:
        yield captured
    finally:
        del generator.forward  # back to the class method


def token_maps(output: NoiseOutput, grid: tuple[int, int], sample: int = 0, first_token: int = 0) -> dict[str, torch.Tensor]:
    """Per-patch ‖μ‖ and mean σ of one image (its tokens start at ``first_token`` within the sample), as grids."""
    rows, cols = grid
    if output.mu is None:
        raise ValueError("The generator ran in mode 'off'; there is no noise to draw.")
    mu = output.mu[sample][first_token : first_token + rows * cols].float()
    sigma = output.log_sigma[sample][first_token : first_token + rows * cols].float().exp()
    if mu.shape[0] != rows * cols:
        raise ValueError(f"Expected {rows * cols} image tokens for a {rows}×{cols} grid, got {mu.shape[0]}.")
    return {"mu_norm": mu.norm(dim=-1).view(rows, cols), "sigma_mean": sigma.mean(dim=-1).view(rows, cols)}


def _colormap(values: torch.Tensor) -> torch.Tensor:
    """[H, W] in [0, 1] → [H, W, 3] uint8, dark blue → cyan → yellow → red (a perceptually ordered ramp)."""
    stops = torch.tensor([[20, 30, 120], [30, 170, 200], [250, 220, 40], [220, 40, 30]], dtype=torch.float32)
    pos = values.clamp(0, 1) * (len(stops) - 1)
    low = pos.floor().long().clamp(max=len(stops) - 2)
    frac = (pos - low.float())[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).round().to(torch.uint8)


def render_overlay(
    image: Image.Image,
    values: torch.Tensor,
    alpha: float = 0.55,
    content_box: Optional[tuple[float, float, float, float]] = None,
) -> Image.Image:
    """Paint a [rows, cols] grid of values over ``image``; the result has the image's size.

    ``content_box`` = (left, top, right, bottom) as fractions of the grid's area that the original image occupies
    (LLaVA pads images to a square before the vision tower; the padding is cropped away here).
    """
    image = image.convert("RGB")
    values = values.detach().float().cpu()
    span = values.max() - values.min()
    normalised = (values - values.min()) / span if span > 0 else torch.zeros_like(values)
    heat = Image.fromarray(_colormap(normalised).numpy())
    if content_box is not None:
        left, top, right, bottom = content_box
        w, h = heat.size
        scale = 64  # crop on an up-sampled grid so fractional boxes stay accurate
        heat = heat.resize((w * scale, h * scale), Image.NEAREST).crop(
            (round(left * w * scale), round(top * h * scale), round(right * w * scale), round(bottom * h * scale))
        )
    heat = heat.resize(image.size, Image.BILINEAR)
    return Image.blend(image, heat, alpha)


def save_noise_figures(
    image: Image.Image,
    maps: dict[str, torch.Tensor],
    out_path: str,
    content_box: Optional[tuple[float, float, float, float]] = None,
) -> list[str]:
    """Write ``out_path`` (‖μ‖ overlay) and ``<stem>_sigma.png`` (mean σ overlay), both at the image's size."""
    from pathlib import Path

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sigma_path = out.with_name(out.stem + "_sigma" + (out.suffix or ".png"))
    render_overlay(image, maps["mu_norm"], content_box=content_box).save(out, format="PNG")
    render_overlay(image, maps["sigma_mean"], content_box=content_box).save(sigma_path, format="PNG")
    return [str(out), str(sigma_path)]
