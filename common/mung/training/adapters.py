"""What both backbones do the same way to a loaded model before training: prepare a bitsandbytes-quantised model
for training, and put LoRA (or DoRA) on the modules the backbone names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn


@dataclass(frozen=True)
class LoraSettings:
    """A backbone's LoRA flags: rank, alpha, dropout, which biases train (``none`` | ``all`` | ``lora_only``), DoRA."""

    r: int
    alpha: int
    dropout: float
    bias: str = "none"
    use_dora: bool = False


def prepare_quantized(model: nn.Module, gradient_checkpointing: bool) -> nn.Module:
    """peft's preparation of a 4/8-bit model for training (norms and head in float32, input gradients on)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def add_lora(model: nn.Module, target_modules: str, settings: LoraSettings, task_type: Optional[str] = None) -> nn.Module:
    """``model`` wrapped by peft with LoRA on the modules the ``target_modules`` regex matches (the backbone says
    which: its language model's linears). ``task_type`` is what the backbone's adapters record (``CAUSAL_LM`` or
    none)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_modules,
        bias=settings.bias,
        use_dora=settings.use_dora,
        task_type=task_type,
    )
    return get_peft_model(model, config)
