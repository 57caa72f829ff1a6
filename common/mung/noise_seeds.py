"""Sampled noise that depends on the question, not on its place: each question's draws come from its own random
stream, seeded by ``--seed`` and its ``question_id``, so a chunked, reordered or differently batched evaluation gives
every question the noise it gets alone.

``per_sample_noise`` holds, for one ``generate`` call, a pre-hook on the model's noise generator that hands it the
standard-normal draws (``eps``) of each sample in the batch (the generator takes them per sample). Draws are made on
the CPU in float32, so they are the same on any device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from noise_generator import find_noise_generator


def question_seed(seed: int, question_id: Any) -> int:
    """A 63-bit seed from ``--seed`` and a question id (its JSON text, so ``1`` and ``"1"`` differ)."""
    text = f"{seed}\0{json.dumps(question_id, sort_keys=True, default=str)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


@contextlib.contextmanager
def per_sample_noise(model: nn.Module, seeds: Optional[Sequence[int]]) -> Iterator[None]:
    """Inside the block, every call of ``model``'s generator draws sample i's noise from a stream seeded ``seeds[i]``
    (the samples of a call are the rows of the batch, in order). No-op without seeds or without a generator."""
    generator = find_noise_generator(model) if seeds else None
    if generator is None:
        yield
        return
    streams = [torch.Generator().manual_seed(int(s)) for s in seeds]
    width = generator.config.hidden_size

    def supply_eps(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        images = args[0] if args else kwargs["image_embeds"]
        if len(images) != len(streams):
            raise RuntimeError(
                f"The noise generator got {len(images)} samples for a batch of {len(streams)} questions."
            )
        eps = [torch.randn((x.shape[0], width), generator=g).to(x.device) for x, g in zip(images, streams)]
        return args, {**kwargs, "eps": eps}

    handle = generator.register_forward_pre_hook(supply_eps, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
