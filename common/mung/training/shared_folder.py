"""Several nodes need one output folder: rank 0 writes the run's files and lock there, and under DeepSpeed every rank
writes its ZeRO shards into the same checkpoint folders, so a resume needs all of them in one place. A node whose
``--output_dir`` is its own local disk would train, save half a checkpoint and fail only when resuming;
``check_output_dir_shared`` stops every rank at the start instead, naming the ranks that do not see the folder."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from .output_dir import LOCK_NAME


class OutputDirNotShared(RuntimeError):
    """Some ranks do not see the output folder rank 0 locked; the message names them."""


def _lock_record(output_dir: str) -> str | None:
    try:
        return (Path(output_dir) / LOCK_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_output_dir_shared(training_args) -> None:
    """Inside ``locked_output_dir`` (rank 0 holds the lock), on every rank of a multi-process run: each rank reads
    the lock file in its own ``--output_dir`` and compares it with rank 0's; if any rank sees another file or none,
    all of them stop with the same message (collective: every rank must call it)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    mine = _lock_record(training_args.output_dir)
    box = [mine]
    dist.broadcast_object_list(box, src=0)
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, (mine is not None and mine == box[0], socket.gethostname()))
    blind = [(rank, host) for rank, (same, host) in enumerate(seen) if not same]
    if blind:
        who = ", ".join(f"rank {rank} on {host}" for rank, host in blind)
        raise OutputDirNotShared(
            f"--output_dir {training_args.output_dir} is not one folder for every node: {who} do(es) not see the "
            f"lock rank 0 holds there ({seen[0][1]}). Put OUTPUT_DIR on a filesystem every node mounts (rank 0 "
            "writes the checkpoints, every rank its DeepSpeed shards into them)."
        )
