"""Training-side helpers shared by the backbones: command-line flags, ZeRO-3-safe saving, optimizer groups."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from .config import NoiseGeneratorConfig
from .generator import NoiseGenerator
from .io import save_noise_generator


@dataclass
class NoiseGeneratorArguments:
    """The ``--ng_*`` flags; one per ``NoiseGeneratorConfig`` field, plus the generator's learning rate."""

    ng_kind: str = field(default="cross_attn", metadata={"help": "cross_attn (paper) | mlp | gaussian (ablations)."})
    ng_heads: int = field(default=8, metadata={"help": "Attention heads of the cross-attention generator."})
    ng_injection: str = field(default="add", metadata={"help": "add (paper) | mul (ablation)."})
    ng_sample_noise: bool = field(
        default=True, metadata={"help": "False injects mu without sampling ('cross-attention only' ablation)."}
    )
    ng_num_samples: int = field(default=1, metadata={"help": "m: noise draws per example; loss averaged over them."})
    ng_inference_mode: str = field(
        default="sample", metadata={"help": "Noise at inference stored in the checkpoint: sample | mean | off."}
    )
    ng_condition_on_answer: bool = field(
        default=True, metadata={"help": "Answer tokens are keys/values during training (paper)."}
    )
    ng_log_sigma_min: float = field(default=-10.0, metadata={"help": "Lower clamp of log sigma."})
    ng_log_sigma_max: float = field(default=2.0, metadata={"help": "Upper clamp of log sigma."})
    ng_gaussian_std: float = field(default=0.1, metadata={"help": "Noise std for --ng_kind gaussian."})
    ng_init: str = field(
        default="xavier", metadata={"help": "xavier (as the authors) | zero (start from the unchanged base model)."}
    )
    ng_lr: Optional[float] = field(
        default=None, metadata={"help": "Learning rate of the generator; default: the run's --learning_rate."}
    )

    def to_config(self, hidden_size: int, base_model_type: Optional[str] = None) -> NoiseGeneratorConfig:
        return NoiseGeneratorConfig(
            hidden_size=hidden_size,
            num_heads=self.ng_heads,
            kind=self.ng_kind,
            injection=self.ng_injection,
            sample_noise=self.ng_sample_noise,
            num_samples=self.ng_num_samples,
            inference_mode=self.ng_inference_mode,
            condition_on_answer=self.ng_condition_on_answer,
            log_sigma_min=self.ng_log_sigma_min,
            log_sigma_max=self.ng_log_sigma_max,
            gaussian_std=self.ng_gaussian_std,
            init=self.ng_init,
            base_model_type=base_model_type,
        )


def find_noise_generator(model: nn.Module) -> Optional[NoiseGenerator]:
    """The generator inside ``model`` (through peft / DeepSpeed wrappers), or None."""
    for module in model.modules():
        if isinstance(module, NoiseGenerator):
            return module
    return None


def _is_partitioned(module: nn.Module) -> bool:
    return any(hasattr(p, "ds_id") for p in module.parameters())


def gathered_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``module``'s tensors. Under ZeRO-3 this gathers partitions: call it on every rank."""
    if _is_partitioned(module):
        import deepspeed  # only needed when ZeRO-3 partitioned the parameters

        params = [p for p in module.parameters() if hasattr(p, "ds_id")]
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}
    return {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}


def save_generator_from_model(
    model: nn.Module, directory: str | os.PathLike, is_main_process: bool = True
) -> Optional[Path]:
    """Write the generator-only checkpoint of ``model`` into ``directory`` (no-op without a generator).

    Collective under ZeRO-3: every rank must call it; only the main process writes.
    """
    generator = find_noise_generator(model)
    if generator is None:
        return None
    state = gathered_state_dict(generator)
    if not is_main_process:
        return None
    return save_noise_generator(generator, directory, state_dict=state)


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
