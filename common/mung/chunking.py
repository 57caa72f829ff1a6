"""The one ``--num-chunks/--chunk-idx`` split of a question list, used by every evaluation entry point."""

from __future__ import annotations

import math
from typing import Sequence, TypeVar

T = TypeVar("T")


def get_chunk(items: Sequence[T], num_chunks: int, chunk_idx: int) -> list[T]:
    """Chunk ``chunk_idx`` of ``num_chunks`` contiguous chunks of ``ceil(len / num_chunks)`` items (the last ones may
    be shorter or empty), so chunks 0..num_chunks-1 concatenated give back ``items`` in order."""
    if num_chunks < 1:
        raise ValueError(f"--num-chunks must be >= 1, got {num_chunks}")
    if not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx must be in [0, {num_chunks}), got {chunk_idx}")
    size = math.ceil(len(items) / num_chunks)
    return list(items[chunk_idx * size:(chunk_idx + 1) * size])
