"""Training on several processes: DeepSpeed on CPU, gathering ZeRO-3 partitions (the generator saved from a
partitioned model), DeepSpeed configs that would drop per-group learning rates, and the end of a process group."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import torch
from torch import nn

from noise_generator import find_noise_generator, save_noise_generator

from ..paths import missing_reason


@contextlib.contextmanager
def _gathered(params: Iterable[torch.Tensor]) -> Iterator[None]:
    """Inside the block, ZeRO-3 partitioned ``params`` are whole on every rank (collective); others are left alone."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    import deepspeed  # only needed when ZeRO-3 partitioned the parameters

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
        yield


def gather_parameters(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``named`` tensors; ZeRO-3 partitions are gathered (collective: call on every rank)."""
    named = list(named)
    with _gathered(p for _, p in named):
        return {name: p.detach().cpu().clone() for name, p in named}


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``module``'s tensors (buffers too); ZeRO-3 partitions are gathered (call on every rank)."""
    with _gathered(module.parameters()):
        return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}


def save_generator_from_model(
    model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True
) -> Optional[Path]:
    """Write the generator-only checkpoint of ``model`` into ``directory`` (no-op without a generator); returns the
    weights path on the main process. Collective under ZeRO-3: every rank must call it; only the main one writes."""
    generator = find_noise_generator(model)
    if generator is None:
        return None
    state = gathered_state_dict(generator)
    if not is_main_process:
        return None
    return save_noise_generator(generator, directory, state_dict=state)


def prepare_cpu_deepspeed(deepspeed_config: Optional[str | dict]) -> None:
    """DeepSpeed without GPUs: open the gloo process group before ``from_pretrained`` (ZeRO-3 partitions while
    loading and needs it then). A single plain ``python`` process gets a one-rank world.

    DeepSpeed builds its shared-memory all-reduce op with g++ the first time a process group opens on CPU (30 s to
    minutes); training never uses it (only DeepSpeed's inference all-reduce does), so it is marked unavailable here
    and gloo carries every collective.
    """
    if not deepspeed_config or torch.cuda.is_available():
        return
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
        os.environ.setdefault(key, value)
    import deepspeed
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def _read_deepspeed_config(deepspeed_config: str | dict) -> tuple[dict, str]:
    if isinstance(deepspeed_config, dict):
        return deepspeed_config, "the DeepSpeed config"
    reason = missing_reason(deepspeed_config)
    if reason:
        what = "no such file" if reason == "does not exist" else reason
        raise FileNotFoundError(f"--deepspeed {deepspeed_config}: {what}; pass a DeepSpeed JSON config.")
    try:
        with open(deepspeed_config, encoding="utf-8") as handle:
            return json.load(handle), str(deepspeed_config)
    except json.JSONDecodeError as err:
        raise ValueError(f"--deepspeed {deepspeed_config} is not valid JSON (line {err.lineno}: {err.msg}).") from None


def check_deepspeed_lr_groups(deepspeed_config: Optional[str | dict], lr_flags: dict[str, Optional[float]]) -> None:
    """Refuse per-group learning rates that a DeepSpeed config would silently drop.

    When the DeepSpeed config defines its own ``optimizer``, DeepSpeed builds it over all parameters as one group,
    so ``--ng_lr`` / ``--mm_projector_lr`` would be ignored without a word.
    """
    requested = sorted(flag for flag, lr in lr_flags.items() if lr is not None)
    if not deepspeed_config or not requested:
        return
    config, source = _read_deepspeed_config(deepspeed_config)
    if "optimizer" in config:
        raise ValueError(
            f"{source} defines its own \"optimizer\", which DeepSpeed builds over all parameters as one group, so "
            f"{' and '.join(requested)} would be silently ignored. Remove the \"optimizer\" (and \"scheduler\") "
            "blocks (with optimizer offload also set \"zero_force_ds_cpu_optimizer\": false, as "
            "scripts/zero3_offload.json does), or drop those flags."
        )


Run = TypeVar("Run")


def train_and_close(train: Callable[[Optional[list[str]]], Run], argv: Optional[list[str]] = None,
                    end_process: bool = False) -> Run:
    """A backbone's training command: ``train(argv)``, then ``close_process_group`` whatever happened
    (``end_process``: the command's own process, which ends with the run)."""
    try:
        return train(argv)
    finally:
        close_process_group(end_process=end_process)


def close_process_group(end_process: bool = False) -> None:
    """End of a training run: wait for every rank (rank 0 may still be writing files), then tear the process group
    down. Left to interpreter shutdown, gloo can destroy a worker thread that is still joinable, which aborts a rank
    that had finished cleanly ("terminate called without an active exception", exit -6); even an explicit teardown
    did so about once in 16 multi-process runs on CPU, as a peer that had left closed its sockets. So a launched
    process whose run ended well (``end_process``: the command's own process, no exception on its way out) leaves
    right after the last barrier, with its output flushed and nothing torn down (every file was written before it)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    torch.distributed.barrier()
    if end_process and sys.exc_info()[0] is None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    torch.distributed.destroy_process_group()
