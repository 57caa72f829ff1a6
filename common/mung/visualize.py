"""Draw where the generator puts its noise: per-patch ‖μ‖ and mean σ over the image (the paper's figure).

    python -m mung.visualize --model-path <ckpt> [--model-base <base>] --image-file img.png \
        --question "What color is the circle?" --out noise.png

writes ``noise.png`` (per-patch ‖μ‖ over the image) and ``noise_sigma.png`` (per-patch mean σ), both at the
image's size, for any backbone: the prompt is encoded by the backbone, the generator's output is captured during
one forward pass (``noise_generator.capture_noise``, mean mode, prompt only as at inference), and the backbone says
which patch grid the image tokens form and where the image sits in it (LLaVA's square padding is cropped away).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from .cli_args import add_backbone_args, add_model_args, load_from_args
from .commands import run_command
from .files import check_output_path
from .help_text import description
from .images import load_image

if TYPE_CHECKING:  # torch and the model code load when a map is drawn, not when the flags are read (--help)
    import torch

    from noise_generator import NoiseOutput

    from .loading import LoadedModel


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
    import torch

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
    import torch

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


MAP_LEGENDS = {
    # Plain-ASCII titles: PIL's built-in font has no Greek letters.
    "mu_norm": ("|mu| per patch: size of the noise mean",
                "High (red): the generator's mean shifts this patch's features most for this question."),
    "sigma_mean": ("mean sigma per patch: spread of the noise",
                   "High (red): this patch gets the most random noise when the generator samples."),
}


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def range_labels(low: float, high: float) -> tuple[str, str]:
    """``low`` and ``high`` with just enough significant digits to tell them apart (a narrow range is common)."""
    for digits in range(3, 9):
        labels = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if labels[0] != labels[1]:
            return labels
    return labels


def colour_bar(low: float, high: float, title: str, legend: str, width: int, font_size: int = 13) -> Image.Image:
    """A key for an overlay: ``title``, the colour ramp from ``low`` (left) to ``high`` (right) with both values,
    and ``legend`` (what a high value means) wrapped to ``width``."""
    import torch

    font = ImageFont.load_default(size=font_size)
    pad, bar_height, line = 8, 14, font_size + 4
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_lines = _wrap(probe, legend, font, width - 2 * pad)
    height = pad + line + bar_height + 4 + line + len(legend_lines) * line + pad
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((pad, pad), title, fill=(0, 0, 0), font=font)
    ramp = _colormap(torch.linspace(0, 1, width - 2 * pad)[None, :].expand(bar_height, -1))
    top = pad + line
    panel.paste(Image.fromarray(ramp.numpy()), (pad, top))
    labels_y = top + bar_height + 4
    low_label, high_label = range_labels(low, high)
    draw.text((pad, labels_y), f"low {low_label}", fill=(0, 0, 0), font=font)
    high_text = f"high {high_label}"
    draw.text((width - pad - draw.textlength(high_text, font=font), labels_y), high_text, fill=(0, 0, 0), font=font)
    for i, text in enumerate(legend_lines):
        draw.text((pad, labels_y + line * (i + 1)), text, fill=(60, 60, 60), font=font)
    return panel


def noise_figure(
    image: Image.Image,
    values: torch.Tensor,
    name: str,
    content_box: Optional[tuple[float, float, float, float]] = None,
    min_width: int = 320,
) -> Image.Image:
    """The overlay of map ``name`` (``mu_norm`` or ``sigma_mean``) at the image's size, with its colour bar and
    legend underneath (the figure is at least ``min_width`` wide so the legend stays legible on small images)."""
    overlay = render_overlay(image, values, content_box=content_box)
    title, legend = MAP_LEGENDS[name]
    width = max(overlay.width, min_width)
    key = colour_bar(float(values.min()), float(values.max()), title, legend, width)
    figure = Image.new("RGB", (width, overlay.height + key.height), (255, 255, 255))
    figure.paste(overlay, ((width - overlay.width) // 2, 0))
    figure.paste(key, (0, overlay.height))
    return figure


def sigma_path_of(out_path: str | Path) -> Path:
    """Where the mean-σ figure of ``out_path`` goes: ``<stem>_sigma.png`` beside it."""
    out = Path(out_path)
    return out.with_name(out.stem + "_sigma" + (out.suffix or ".png"))


def save_noise_figures(
    image: Image.Image,
    maps: dict[str, torch.Tensor],
    out_path: str,
    content_box: Optional[tuple[float, float, float, float]] = None,
) -> list[str]:
    """Write ``out_path`` (‖μ‖ overlay) and ``<stem>_sigma.png`` (mean σ overlay), both at the image's size."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sigma_path = sigma_path_of(out)
    render_overlay(image, maps["mu_norm"], content_box=content_box).save(out, format="PNG")
    render_overlay(image, maps["sigma_mean"], content_box=content_box).save(sigma_path, format="PNG")
    return [str(out), str(sigma_path)]


def noise_maps(loaded: LoadedModel, image: Image.Image, question: str
               ) -> tuple[dict[str, torch.Tensor], Optional[tuple[float, float, float, float]]]:
    """Per-patch ‖μ‖ and mean σ for ``image`` under ``question``, and where the image sits in the patch grid."""
    import torch

    from noise_generator import capture_noise

    from .backbones import Prompt

    with torch.inference_mode():
        prompt = Prompt.question(question, [image])
        prompt.check()
        encoded = loaded.backbone.encode(loaded, prompt)
        batch = loaded.backbone.collate(loaded, [encoded])
        with capture_noise(loaded.model, mode="mean") as captured:
            loaded.model(**batch)
        rows, cols, box = loaded.backbone.image_grid(loaded, encoded, image)
        return token_maps(captured.last(), (rows, cols)), box


def main(argv: Optional[Sequence[str]] = None) -> list[str]:
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_model_args(parser)
    add_backbone_args(parser)
    parser.add_argument("--image-file", required=True, help="the image: a path or URL")
    parser.add_argument("--question", required=True, help="the question the generator attends to")
    parser.add_argument("--out", default="noise.png",
                        help="the |mu| map (PNG); the mean-sigma map goes beside it as <stem>_sigma.png")
    args = parser.parse_args(argv)
    check_output_path(args.out, "--out", {"--image-file": args.image_file, "--model-path": args.model_path,
                                          "--model-base": args.model_base},
                      also={"its σ map": str(sigma_path_of(args.out))})
    image = load_image(args.image_file)
    loaded = load_from_args(args)
    maps, box = noise_maps(loaded, image, args.question)
    paths = save_noise_figures(image, maps, args.out, content_box=box)
    print("wrote " + ", ".join(paths))
    return paths


if __name__ == "__main__":
    run_command(main)
