"""The Trainer of Qwen2.5-VL + MuNG: optimizer groups (own lr for the generator) and complete checkpoints.

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

from noise_generator import is_noise_generator_dir, load_generator_weights, load_noise_generator_state
from noise_generator.guards import NonFiniteGuardMixin
from noise_generator.io import save_pretrained_atomically
from noise_generator.training import RankLogMixin, find_noise_generator, optimizer_groups, save_generator_from_model

logger = logging.getLogger(__name__)


def _is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


class NoiseTrainer(NonFiniteGuardMixin, RankLogMixin, Trainer):
    """`Trainer` that saves generator / adapter / full weights per ``tune`` and gives the generator, the merger and
    the vision tower their own learning rates (``--ng_lr``, ``--merger_lr``, ``--vision_lr``)."""

    def __init__(self, *args, tune: str = "noise", ng_lr: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = tune
        self.ng_lr = ng_lr

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            # first matching key wins: the merger lives inside the vision tower ("visual.merger.")
            lr_overrides = {
                "noise_generator": self.ng_lr,
                "visual.merger.": getattr(self.args, "merger_lr", None),
                "visual.": getattr(self.args, "vision_lr", None),
            }
            groups = optimizer_groups(opt_model, self.args.weight_decay, lr_overrides)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _zero3(self) -> bool:
        return self.is_deepspeed_enabled and self.deepspeed.config.get("zero_optimization", {}).get("stage") == 3

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Collective under DeepSpeed ZeRO-3 (every rank calls it, as the Trainer does); the main process writes."""
        if self.tune == "full":
            super().save_model(output_dir, _internal_call=_internal_call)
            self._save_generator(output_dir or self.args.output_dir)
            return
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        self._save_generator(output_dir)
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

    def _save_generator(self, output_dir: str) -> None:
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        save_generator_from_model(model, output_dir, is_main_process=self.args.should_save)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[torch.nn.Module] = None) -> None:
        """Resume: restore the generator from its files, then whatever else the checkpoint holds."""
        model = self.model if model is None else model
        if is_noise_generator_dir(resume_from_checkpoint):
            generator = find_noise_generator(model)
            if generator is None:
                raise ValueError(f"{resume_from_checkpoint} holds a noise generator but this run (--tune {self.tune}) has none.")
            _, tensors = load_noise_generator_state(resume_from_checkpoint)
            reference = next(generator.parameters())
            tensors = {k: v.to(reference.device, reference.dtype) for k, v in tensors.items()}
            load_generator_weights(generator, tensors, source=resume_from_checkpoint)
            logger.info("Restored the noise generator from %s", resume_from_checkpoint)
        if self.tune == "noise":
            return  # nothing else was trained
        super()._load_from_checkpoint(resume_from_checkpoint, model)
