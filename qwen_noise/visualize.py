"""Draw where a Qwen2.5-VL + MuNG checkpoint puts its noise for one image and question.

    python -m qwen_noise.visualize --model-path <ckpt> [--model-base <base>] --image-file img.png \
        --question "What color is the circle?" --out noise.png

Writes ``noise.png`` (per-patch ‖μ‖ over the image, one cell per merged 2×2 patch group) and ``noise_sigma.png``
(per-patch mean σ), both at the image's size.
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

import torch
from PIL import Image

from noise_generator.visualize import capture_noise, save_noise_figures, token_maps

from .data import build_inference_inputs
from .data.prompting import IMAGE_PLACEHOLDER
from .model.builder import load_pretrained_model


@torch.inference_mode()
def noise_maps(processor, model, image: Image.Image, question: str) -> dict[str, torch.Tensor]:
    """Per-patch ‖μ‖ and mean σ for ``image`` under ``question`` (prompt only, as at inference)."""
    inputs = build_inference_inputs(processor, [("user", IMAGE_PLACEHOLDER + "\n" + question)], [image])
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with capture_noise(model, mode="mean") as captured:
        model(**inputs)
    _, rows, cols = inputs["image_grid_thw"][0].tolist()
    merge = processor.image_processor.merge_size
    return token_maps(captured.last(), (rows // merge, cols // merge))


def main(argv: Optional[Sequence[str]] = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None)
    parser.add_argument("--image-file", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--out", default="noise.png")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu (float32)")
    args = parser.parse_args(argv)
    processor, model = load_pretrained_model(args.model_path, args.model_base, device=args.device)
    try:
        image = Image.open(args.image_file).convert("RGB")
    except (FileNotFoundError, OSError) as err:
        raise SystemExit(f"Cannot read image {args.image_file}: {err}") from err
    paths = save_noise_figures(image, noise_maps(processor, model, image, args.question), args.out)
    print("wrote " + ", ".join(paths))
    return paths


if __name__ == "__main__":
    main()
