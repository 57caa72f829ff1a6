"""The one ``--num-chunks/--chunk-idx`` split used by every eval script."""

import math


def get_chunk(items, num_chunks, chunk_idx):
    """Return chunk ``chunk_idx`` of ``num_chunks`` contiguous, near-equal chunks of ``items``.

    Chunks have ``ceil(len/num_chunks)`` items (the last ones may be shorter or empty), so concatenating
    chunks 0..num_chunks-1 gives back ``items`` in order — which is how the shell scripts merge answer files.
    """
    if num_chunks < 1:
        raise ValueError(f"--num-chunks must be >= 1, got {num_chunks}")
    if not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx must be in [0, {num_chunks}), got {chunk_idx}")
    size = math.ceil(len(items) / num_chunks)
    return list(items[chunk_idx * size:(chunk_idx + 1) * size])


def add_chunk_args(parser):
    parser.add_argument("--num-chunks", type=int, default=1, help="split the questions into this many chunks")
    parser.add_argument("--chunk-idx", type=int, default=0, help="which chunk this process answers (0-based)")
