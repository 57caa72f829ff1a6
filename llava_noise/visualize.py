"""Draw where a LLaVA + MuNG checkpoint puts its noise for one image and question.

    python -m llava_noise.visualize --model-path <ckpt> [--model-base <base>] --image-file img.png \
        --question "What color is the circle?" --out noise.png

Writes ``noise.png`` (per-patch ‖μ‖ over the image) and ``noise_sigma.png`` (per-patch mean σ), both at the
image's size; the square padding LLaVA adds before the vision tower is cropped away.
"""

from __future__ import annotations

import argparse
import math
from typing import Optional, Sequence

import torch
from PIL import Image

from noise_generator.visualize import capture_noise, save_noise_figures, token_maps

from .eval.inference import LoadedModel, add_model_args, build_prompt, image_tensor, infer_conv_mode, load_for_inference, load_image
from .mm_utils import tokenizer_image_token


def padded_content_box(image: Image.Image, aspect_ratio: Optional[str]) -> Optional[tuple[float, float, float, float]]:
    """Where the image sits inside the square LLaVA pads it to ("pad"), as fractions of that square."""
    if aspect_ratio != "pad":
        return None
    w, h = image.size
    side = max(w, h)
    left, top = (side - w) / 2 / side, (side - h) / 2 / side
    return (left, top, left + w / side, top + h / side)


@torch.inference_mode()
def noise_maps(loaded: LoadedModel, image: Image.Image, question: str, conv_mode: str) -> dict[str, torch.Tensor]:
    """Per-patch ‖μ‖ and mean σ for ``image`` under ``question`` (prompt only, as at inference)."""
    prompt = build_prompt(question, True, conv_mode, getattr(loaded.model.config, "mm_use_im_start_end", False))
    input_ids = tokenizer_image_token(prompt, loaded.tokenizer, return_tensors="pt")[None].to(loaded.device)
    with capture_noise(loaded.model, mode="mean") as captured:
        loaded.model(input_ids=input_ids, images=image_tensor([image], loaded))
    n_tokens = captured.last().mu[0].shape[0]
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise ValueError(f"{n_tokens} image tokens do not form a square patch grid.")
    return token_maps(captured.last(), (side, side))


def main(argv: Optional[Sequence[str]] = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.set_defaults(conv_mode=None)
    parser.add_argument("--image-file", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--out", default="noise.png")
    args = parser.parse_args(argv)
    args.noise_mode = None
    loaded = load_for_inference(args)
    conv_mode = args.conv_mode or infer_conv_mode(loaded.model, loaded.tokenizer)
    image = load_image(args.image_file)
    maps = noise_maps(loaded, image, args.question, conv_mode)
    box = padded_content_box(image, getattr(loaded.model.config, "image_aspect_ratio", None))
    paths = save_noise_figures(image, maps, args.out, content_box=box)
    print("wrote " + ", ".join(paths))
    return paths


if __name__ == "__main__":
    main()
