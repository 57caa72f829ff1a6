"""Putting the generator into a model and finding it there again."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

from torch import nn

from .generator import NoiseGenerator, NoiseOutput


def find_noise_generator(model: nn.Module) -> Optional[NoiseGenerator]:
    """The generator inside ``model`` (through peft / DeepSpeed wrappers), or None."""
    for module in model.modules():
        if isinstance(module, NoiseGenerator):
            return module
    return None


def module_name_of(model: nn.Module, target: nn.Module) -> str:
    """The dotted name of ``target`` inside ``model`` (as in ``model.named_modules()``)."""
    for name, module in model.named_modules():
        if module is target:
            return name
    raise ValueError(f"{type(target).__name__} is not part of this {type(model).__name__}.")


@dataclass
class CapturedNoise:
    """The generator outputs seen while the context was open (one per generator call)."""

    outputs: list[NoiseOutput]

    def last(self) -> NoiseOutput:
        if not self.outputs:
            raise RuntimeError("The model ran without calling its noise generator; nothing to visualise.")
        return self.outputs[-1]


@contextlib.contextmanager
def capture_noise(model: nn.Module, mode: str = "mean") -> Iterator[CapturedNoise]:
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
