"""Helpers the backbones share to plug the generator into a model's forward pass.

The rules both backbones must agree on live here, once: which text positions are keys (``text_key_mask``), how many
noise draws a training sample gets (``noise_draws``), and how the batch and its supervised-token count grow with
them (``repeat_for_noise_samples``, ``scale_num_items``).
"""

from __future__ import annotations

from typing import Optional

import torch

from .generator import NoiseGenerator

IGNORE_INDEX = -100


def text_key_mask(
    attention_mask: Optional[torch.Tensor],
    image_token_mask: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    training: bool = False,
    condition_on_answer: bool = True,
) -> torch.Tensor:
    """Which text positions the generator may attend to, ``[B, T]`` bool.

    Never padding (``attention_mask == 0``) and never image placeholders. Answer positions (``labels != -100``) are
    keys only in training with ``condition_on_answer`` (the paper's training); outside training (a validation loss,
    scoring) or with ``condition_on_answer`` False they are never keys, so the noise cannot depend on the answer it
    is scored on. Without labels the answer cannot be told apart: every non-padding text position is a key (at
    inference that is the prompt alone, as the paper describes).
    """
    keys = ~image_token_mask.bool()
    if attention_mask is not None:
        keys = keys & attention_mask.bool()
    if labels is not None and not (training and condition_on_answer):
        keys = keys & (labels == IGNORE_INDEX)
    return keys


def noise_draws(generator: Optional[NoiseGenerator], training: bool, mode: Optional[str] = None) -> int:
    """m: copies of each sample in this forward, each with its own noise draw. ``num_samples`` in training when
    the generator adds noise in this call's ``mode``; 1 otherwise (inference, no generator, mode ``off``)."""
    if generator is None or not training or generator.resolve_mode(mode) == "off":
        return 1
    return generator.config.num_samples


def repeat_for_noise_samples(tensor: Optional[torch.Tensor], num_samples: int) -> Optional[torch.Tensor]:
    """Repeat every sample of a batch ``num_samples`` times (sample-major), so each copy draws its own noise.

    The mean token loss over the expanded batch equals the mean over the m draws of each sample's loss, which is
    the Monte-Carlo estimate in the paper's objective.
    """
    if tensor is None or num_samples == 1:
        return tensor
    return tensor.repeat_interleave(num_samples, dim=0)


def scale_num_items(num_items_in_batch, num_samples: int):
    """The supervised-token count of a batch repeated ``num_samples`` times inside the model.

    Callers (the Trainer among them) count the answer tokens of the batch they pass in; after the repetition the
    loss sums m times as many, so the count must grow with it or the loss would be m times the mean. ``None`` (no
    count given: the loss is a plain mean) stays ``None``.
    """
    if num_items_in_batch is None or num_samples == 1:
        return num_items_in_batch
    return num_items_in_batch * num_samples
