"""``MungTrainerMixin``: what every backbone's Trainer adds to transformers' ``Trainer`` (put it first in the bases).

- the NaN/inf guard (``nonfinite.NonFiniteGuardMixin``);
- optimizer groups: the generator learns at ``--ng_lr`` and each part the backbone names in ``lr_overrides`` at its
  own rate (first matching name wins), no weight decay on 1-D tensors;
- ``save_generator``: the generator-only files in every checkpoint (ZeRO-3 partitions gathered; collective);
- resuming without DeepSpeed (whose engine restores its own state): the generator from those files
  (``noise_generator.restore_generator``, the same restore loading uses), then whatever else the backbone saved
  (``load_trained_weights``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from noise_generator import (
    CONFIG_NAME,
    GeneratorSettingsChanged,
    NoiseGeneratorConfig,
    changed_settings,
    find_noise_generator,
    is_noise_generator_dir,
    restore_generator,
)

from ..files import atomic_write, save_pretrained_atomically
from .distributed import save_generator_from_model
from .flags import flag_or_description
from .output_dir import disk_full_reported
from .runs import TRAINER_STATE_FILE, last_complete_checkpoint
from .nonfinite import NonFiniteGuardMixin
from .parameters import optimizer_groups

logger = logging.getLogger(__name__)


START_AGAIN = "or start again with --overwrite_output_dir True or a new --output_dir"


def check_resume_generator(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Before resuming from ``checkpoint`` (any resume, DeepSpeed's too, which restores tensors without looking at
    settings): the run's generator must be the one the checkpoint's weights were trained as. A generator added or
    dropped, or a setting that changes its shapes or meaning (``--ng_heads 8`` → ``4``), is refused naming each."""
    generator = find_noise_generator(model)
    saved = is_noise_generator_dir(checkpoint)
    if generator is None and saved:
        raise ValueError(f"Resuming from {checkpoint}: it holds a noise generator but this run has none; pass the "
                         f"generator flags of the run that wrote it, {START_AGAIN}.")
    if generator is not None and not saved:
        raise ValueError(f"Resuming from {checkpoint}: it holds no noise generator but this run adds one; drop the "
                         f"generator flags to continue that run, {START_AGAIN}.")
    if generator is None:
        return
    saved_config = NoiseGeneratorConfig.from_json_file(Path(checkpoint) / CONFIG_NAME)
    changes = changed_settings(saved_config, generator.config)
    if changes:
        described = GeneratorSettingsChanged(f"{checkpoint}", changes).describe(flag_or_description, "this run")
        raise ValueError(f"{described[:-1]}, {START_AGAIN}.")


class MungTrainerMixin(NonFiniteGuardMixin):
    """See the module docstring. ``ng_lr``: the generator's learning rate (None: ``--learning_rate``)."""

    def __init__(self, *args, ng_lr: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ng_lr = ng_lr

    def lr_overrides(self) -> dict[str, Optional[float]]:
        """Parameter-name fragment → learning rate (None: the default one). A backbone adds its own parts."""
        return {"noise_generator": self.ng_lr}

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            model = self.model if model is None else model
            groups = optimizer_groups(model, self.args.weight_decay, self.lr_overrides())
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint; a full disk is reported as one, naming the folder and the checkpoint before."""
        folder = f"{self.args.output_dir}/checkpoint-{self.state.global_step}"
        with disk_full_reported(folder, f"checkpoint-{self.state.global_step}",
                                earlier=last_complete_checkpoint(self.args.output_dir)):
            super()._save_checkpoint(model, trial)

    def save_state(self) -> None:
        """The final trainer_state.json, written atomically (a run stopped while writing it keeps the earlier one)."""
        if self.is_world_process_zero():
            atomic_write(os.path.join(self.args.output_dir, TRAINER_STATE_FILE), self.state.save_to_json)

    def save_generator(self, output_dir: str) -> None:
        """The generator-only files of the model into ``output_dir`` (no-op without a generator); every rank calls
        it under ZeRO-3, the main process writes."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        save_generator_from_model(model, output_dir, is_main_process=self.args.should_save)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[torch.nn.Module] = None) -> None:
        """Resume: the generator from its files, then ``load_trained_weights``."""
        model = self.model if model is None else model
        if is_noise_generator_dir(resume_from_checkpoint):
            name = restore_generator(model, resume_from_checkpoint)
            logger.info("Restored the noise generator (%s) from %s", name, resume_from_checkpoint)
        self.load_trained_weights(resume_from_checkpoint, model)

    def load_trained_weights(self, checkpoint: str, model: torch.nn.Module) -> None:
        """What a checkpoint holds besides the generator files. Default: transformers' own loading (full weights or
        a peft adapter); a backbone overrides it for the files of its own (or for runs that train the generator
        alone)."""
        super()._load_from_checkpoint(checkpoint, model)


class TunedCheckpointsMixin:
    """For a backbone whose ``--tune`` is ``noise`` (generator only), a LoRA tune (adapter, with or without the
    generator) or ``full``: every checkpoint folder holds what ``mung.loading.load`` and resuming need, and nothing
    more — the generator-only files, the peft adapter (gathered under ZeRO-3) when there is one, the processor and the
    training arguments; ``full`` folders are the Trainer's own (``save_full`` says how). Put it before
    ``MungTrainerMixin``."""

    def __init__(self, *args, tune: str = "noise", **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = tune

    def _zero3(self) -> bool:
        return self.is_deepspeed_enabled and self.deepspeed.config.get("zero_optimization", {}).get("stage") == 3

    def save_full(self, output_dir: str, _internal_call: bool) -> None:
        """``--tune full``: the whole model, then the generator-only files beside it."""
        super().save_model(output_dir, _internal_call=_internal_call)
        self.save_generator(output_dir)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Collective under DeepSpeed ZeRO-3 (every rank calls it, as the Trainer does); the main process writes."""
        output_dir = output_dir or self.args.output_dir
        if self.tune == "full":
            self.save_full(output_dir, _internal_call)
            return
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        self.save_generator(output_dir)
        if hasattr(model, "peft_config"):
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
