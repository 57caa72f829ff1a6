"""Text-only training batches under DeepSpeed ZeRO-3.

ZeRO-3 gathers each module's parameters from every rank when the module runs, so all ranks must run the same modules
in the same order. The stock families skip their vision encoder when a batch has no image: a rank with a text-only
batch would wait for collectives that a rank with images never makes (or mix up their order) and the run would hang.
``BlankImagePass`` makes a text-only training call run the vision side too, at the place images run (after the
prompt is embedded, before the language model): on one blank image encoded by the family's own processor, through
``get_image_features``, with the result added to the language model's inputs times zero (the loss and the gradients
stay exactly those of the text; the vision side stays in the autograd graph with a zero gradient, as it is on a
rank with images).
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator

import torch
from PIL import Image
from torch import nn

from .. import prompting

BLANK_SIDE = 64


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every floating tensor inside ``value`` (a tensor, a model output, or nested lists / tuples / dicts of them)."""
    if torch.is_tensor(value):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict) or hasattr(value, "to_tuple"):
        for item in (value.values() if isinstance(value, dict) else value.to_tuple()):
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def blank_image_inputs(model: nn.Module, processor) -> dict[str, torch.Tensor]:
    """What ``model.get_image_features`` takes for one blank image, as the family's processor encodes it."""
    text = prompting.render(processor, prompting.messages_of([("user", prompting.IMAGE_PLACEHOLDER)]),
                            add_generation_prompt=True)
    blank = Image.new("RGB", (BLANK_SIDE, BLANK_SIDE), (255, 255, 255))
    encoded = prompting.process(processor, [text], [[blank]])
    accepted = inspect.signature(model.get_image_features).parameters
    return {key: value for key, value in encoded.items() if key in accepted}


class BlankImagePass:
    """See the module docstring. ``install`` puts it on a model (before peft wraps it); ``remove`` takes it off."""

    def __init__(self, model: nn.Module, processor):
        self.model = model
        self.inputs = blank_image_inputs(model, processor)
        self.text_only = False
        self.handles: list = []

    def install(self) -> "BlankImagePass":
        self.handles = [
            self.model.register_forward_pre_hook(self.before_model, with_kwargs=True),
            # First among the decoder's pre-hooks: the vision side runs before the noise generator, as with images.
            self.model.get_decoder().register_forward_pre_hook(self.before_decoder, with_kwargs=True, prepend=True),
        ]
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def before_model(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        images = [value for key, value in kwargs.items() if key.startswith("pixel_values") and value is not None]
        self.text_only = module.training and not images

    def before_decoder(self, module: nn.Module, args: tuple, kwargs: dict):
        embeds = kwargs.get("inputs_embeds")
        if not self.text_only or embeds is None:
            return None
        self.text_only = False  # once per call of the model
        inputs = {key: value.to(embeds.device, embeds.dtype) if value.is_floating_point() else value.to(embeds.device)
                  for key, value in self.inputs.items()}
        features = self.model.get_image_features(**inputs)
        zero = sum(t.float().sum() for t in _tensors(features)) * 0.0
        return args, dict(kwargs, inputs_embeds=embeds + torch.nan_to_num(zero).to(embeds.dtype))
