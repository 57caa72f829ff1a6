"""Trainable parameters: how many there are (ZeRO-3 partitions counted whole) and the optimizer's parameter groups,
with a learning rate of their own for parts such as the generator or the projector."""

from __future__ import annotations

from typing import Mapping, Optional

from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; works on ZeRO-3 partitioned params (uses ``ds_numel`` when present)."""
    trainable = total = 0
    for param in model.parameters():
        n = getattr(param, "ds_numel", None) or param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def describe_trainable(model: nn.Module) -> str:
    """One log line: trainable parameters and their share of the model."""
    trainable, total = count_parameters(model)
    share = 100.0 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {share:.4f}"


def optimizer_groups(
    model: nn.Module, weight_decay: float, lr_overrides: Optional[Mapping[str, Optional[float]]] = None
) -> list[dict]:
    """Parameter groups for the trainable parameters of ``model``.

    Biases and other 1-D tensors (norm weights) get no weight decay. A parameter whose name contains a key of
    ``lr_overrides`` with a non-None value goes into a group with that learning rate (first matching key wins);
    the others use the optimizer's default learning rate.
    """
    active = {key: lr for key, lr in (lr_overrides or {}).items() if lr is not None}
    buckets: dict[tuple[Optional[str], bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        owner = next((key for key in active if key in name), None)
        decay = param.ndim >= 2
        buckets.setdefault((owner, decay), []).append(param)
    groups = []
    for (owner, decay), params in buckets.items():
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if owner is not None:
            group["lr"] = active[owner]
        groups.append(group)
    return groups
