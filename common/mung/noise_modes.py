"""Which noise a loaded model adds at inference: the one rule every entry point (eval, chat, serving) follows."""

from __future__ import annotations

from typing import Optional

from torch import nn

from noise_generator import MODES, find_noise_generator


def resolve_noise_mode(model: nn.Module, requested: Optional[str]) -> tuple[str, str]:
    """(mode, where it came from): the requested ``sample | mean | off`` (``flag``), else the generator's stored
    ``inference_mode`` (``checkpoint``), else ``off`` for a model without a generator (``none``).

    Asking a model without a generator for ``sample`` or ``mean`` is an error: it would evaluate the base model and
    label its answers as noised.
    """
    if requested is not None and requested not in MODES:
        raise ValueError(f"--noise-mode {requested!r} is not one of {', '.join(MODES)}.")
    generator = find_noise_generator(model)
    if requested is None:
        return (generator.config.inference_mode, "checkpoint") if generator is not None else ("off", "none")
    if requested != "off" and generator is None:
        raise ValueError(
            f"--noise-mode {requested}: this checkpoint has no noise generator, so there is no noise to add; use "
            "--noise-mode off or leave the flag out (or load a MuNG checkpoint)."
        )
    return requested, "flag"
