"""The Trainer of Qwen2.5-VL + MuNG: the shared ``MungTrainerMixin`` (NaN/inf guard, optimizer groups, generator
saved and restored) with the merger's and vision tower's own learning rates, and complete checkpoints.

Every checkpoint directory (``checkpoint-N`` too) holds what inference and resuming need, and nothing more:

- ``--tune noise``: the generator-only files (``noise_generator.safetensors`` + its config) and the processor;
- LoRA / DoRA tunes: the adapter, plus the generator files when there is a generator, and the processor;
- ``--tune full``: the full model (``save_pretrained``) and the processor.
"""

import logging
import os
from typing import Optional

import torch
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from mung.files import save_pretrained_atomically
from mung.training.trainer import MungTrainerMixin

logger = logging.getLogger(__name__)


def _is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


class NoiseTrainer(MungTrainerMixin, Trainer):
    """`Trainer` that saves generator / adapter / full weights per ``tune`` and gives the generator, the merger and
    the vision tower their own learning rates (``--ng_lr``, ``--merger_lr``, ``--vision_lr``)."""

    def __init__(self, *args, tune: str = "noise", **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = tune

    def lr_overrides(self) -> dict[str, Optional[float]]:
        # first matching key wins: the merger lives inside the vision tower ("visual.merger.")
        return {
            **super().lr_overrides(),
            "visual.merger.": getattr(self.args, "merger_lr", None),
            "visual.": getattr(self.args, "vision_lr", None),
        }

    def _zero3(self) -> bool:
        return self.is_deepspeed_enabled and self.deepspeed.config.get("zero_optimization", {}).get("stage") == 3

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Collective under DeepSpeed ZeRO-3 (every rank calls it, as the Trainer does); the main process writes."""
        if self.tune == "full":
            super().save_model(output_dir, _internal_call=_internal_call)
            self.save_generator(output_dir or self.args.output_dir)
            return
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        self.save_generator(output_dir)
        if _is_peft(model):
            state_dict = None
            if self._zero3():  # adapter tensors are partitioned: gather the trainable ones (collective)
                state_dict = self.deepspeed._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=True)
            if self.args.should_save:
                save_pretrained_atomically(model, output_dir, state_dict=state_dict)
        if self.args.should_save:
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def load_trained_weights(self, checkpoint: str, model: torch.nn.Module) -> None:
        """Resume after the generator (which ``MungTrainerMixin`` restores): ``--tune noise`` trained nothing else."""
        if self.tune != "noise":
            super().load_trained_weights(checkpoint, model)
