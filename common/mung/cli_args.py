"""Command-line flags shared by every inference entry point (LLaVA's names, so its scripts keep working)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .backbone_flags import add_backbone_args  # noqa: F401  (the entry points import it from here)
from .flag_choices import NOISE_MODES

if TYPE_CHECKING:
    from .generation import GenerationSettings
    from .loading import LoadedModel

# Building a parser imports no torch (``--help`` stays instant): the device is resolved when the model loads.
AUTO_DEVICE = "auto"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolved_device(device: str) -> str:
    """``--device auto`` (the default): cuda when torch sees a GPU, else cpu."""
    return default_device() if device == AUTO_DEVICE else device


def add_model_args(parser: argparse.ArgumentParser, conv_mode_default: Any = None) -> None:
    parser.add_argument("--model-path", type=str, required=True, help="checkpoint folder (any kind, any backbone)")
    parser.add_argument("--model-base", type=str, default=None,
                        help="base model folder for LoRA / projector-only / generator-only checkpoints")
    parser.add_argument("--conv-mode", type=str, default=conv_mode_default,
                        help="conversation template (LLaVA); default: the one the checkpoint was trained with")
    parser.add_argument("--device", type=str, default=AUTO_DEVICE,
                        help="cuda, cuda:N or cpu (float32); auto: cuda when available, else cpu")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default=None,
                        help="noise at inference (default: the checkpoint's inference_mode; off without a generator)")
    parser.add_argument("--seed", type=int, default=0, help="seeds noise sampling and temperature sampling")
    parser.add_argument("--load-8bit", action="store_true", help="load the LLM in 8 bits (bitsandbytes)")
    parser.add_argument("--load-4bit", action="store_true", help="load the LLM in 4 bits (bitsandbytes NF4)")


def add_generation_args(parser: argparse.ArgumentParser, temperature: float = 0.2, max_new_tokens: Any = 128) -> None:
    """``max_new_tokens=None``: the flag's default is "what the context leaves" (``generation_settings`` names the
    cap), for one-shot queries and chats; evaluation keeps a fixed default so its answers do not depend on it."""
    parser.add_argument("--temperature", type=float, default=temperature, help="sampling temperature (0: greedy)")
    parser.add_argument("--top_p", "--top-p", dest="top_p", type=float, default=None,
                        help="nucleus sampling: the smallest set of tokens with this much probability")
    parser.add_argument("--num_beams", "--num-beams", dest="num_beams", type=int, default=1, help="beam search width")
    parser.add_argument("--max_new_tokens", "--max-new-tokens", dest="max_new_tokens", type=int, default=max_new_tokens,
                        help="most new tokens of an answer" + ("" if max_new_tokens is not None else
                                                                " (default: 512, or what the model's context leaves)"))


def add_chunk_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-chunks", type=int, default=1, help="split the questions into this many chunks")
    parser.add_argument("--chunk-idx", type=int, default=0, help="which chunk this process answers (0-based)")


def load_from_args(args: argparse.Namespace) -> "LoadedModel":
    """Seed, then load ``--model-path`` (over ``--model-base``) as the flags say."""
    from transformers import set_seed

    from .loading import LoadOptions, load

    args.device = resolved_device(args.device)
    set_seed(args.seed)
    bits = 4 if getattr(args, "load_4bit", False) else 8 if getattr(args, "load_8bit", False) else 16
    options = LoadOptions(device=args.device, bits=bits)
    loaded = load(args.model_path, args.model_base, options, noise_mode=args.noise_mode,
                  template=getattr(args, "conv_mode", None))
    loaded.backbone.configure(loaded, args)
    return loaded


def generation_settings(args: argparse.Namespace, default_max_new_tokens: int = 128) -> "GenerationSettings":
    from .generation import GenerationSettings

    return GenerationSettings.from_args(args, default_max_new_tokens)
