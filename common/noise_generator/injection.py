"""Helpers the backbones share to plug the generator into a model's forward pass."""

from __future__ import annotations

from typing import Optional

import torch

IGNORE_INDEX = -100


def text_key_mask(
    attention_mask: Optional[torch.Tensor],
    image_token_mask: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    include_answer: bool = True,
) -> torch.Tensor:
    """Which text positions the generator may attend to, ``[B, T]`` bool.

    Never padding (``attention_mask == 0``) and never image placeholders. Answer positions (``labels != -100``)
    are keys only when ``include_answer`` (training with ``condition_on_answer``); at inference there are no labels
    and the prompt alone is seen, as the paper describes.
    """
    keys = ~image_token_mask.bool()
    if attention_mask is not None:
        keys = keys & attention_mask.bool()
    if labels is not None and not include_answer:
        keys = keys & (labels == IGNORE_INDEX)
    return keys


def repeat_for_noise_samples(tensor: Optional[torch.Tensor], num_samples: int) -> Optional[torch.Tensor]:
    """Repeat every sample of a batch ``num_samples`` times (sample-major), so each copy draws its own noise.

    The mean token loss over the expanded batch equals the mean over the m draws of each sample's loss, which is
    the Monte-Carlo estimate in the paper's objective.
    """
    if tensor is None or num_samples == 1:
        return tensor
    return tensor.repeat_interleave(num_samples, dim=0)
