"""The Trainer of the generic backbone: the shared ``MungTrainerMixin`` (NaN/inf guard, optimizer groups, generator
saved and restored), m noise draws per sample, and complete checkpoints.

Every checkpoint directory (``checkpoint-N`` too) holds what ``mung.loading.load`` needs over the base
(``--model-base``, or for LoRA the base its adapter names) and what resuming needs, and nothing more:

- ``--tune noise``: the generator-only files (``noise_generator.safetensors`` + its config) and the processor;
- ``--tune noise_lora`` / ``lora``: the peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``), the
  generator files with a generator, and the processor;
- ``--tune full``: the full model (``save_pretrained``) and the processor.

m noise draws (``--ng_num_samples``): each draw is one forward of the whole batch, the loss is their mean, each
normalised by the Trainer's ``num_items_in_batch`` as it is (see ``noise_generator.mean_loss_over_draws``).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import torch
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from mung.files import save_pretrained_atomically
from mung.training.trainer import MungTrainerMixin
from noise_generator import NoiseDraws, find_noise_generator

logger = logging.getLogger(__name__)


class MeanOverDrawsMixin:
    """``compute_loss`` = the mean over the generator's m noise draws of the Trainer's own loss of the batch (m
    forwards: each family lays out its batch its own way, so it is not repeated inside the model). Put it after
    ``MungTrainerMixin`` (whose NaN/inf guard then checks the mean) and before ``Trainer``."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        draws = NoiseDraws.for_call(find_noise_generator(model), model.training).m
        results = []
        for _ in range(draws):
            results.append(super().compute_loss(model, inputs, return_outputs=return_outputs,
                                                num_items_in_batch=num_items_in_batch))
        if draws == 1:
            return results[0]
        losses = [result[0] if return_outputs else result for result in results]
        loss = torch.stack(losses).mean()
        return (loss, results[-1][1]) if return_outputs else loss


class VLMTrainer(MungTrainerMixin, MeanOverDrawsMixin, Trainer):
    """``Trainer`` that saves generator / adapter / full weights per ``tune`` (see the module docstring)."""

    def __init__(self, *args, tune: str = "noise", **kwargs):
        super().__init__(*args, **kwargs)
        self.tune = tune

    def _zero3(self) -> bool:
        return self.is_deepspeed_enabled and self.deepspeed.config.get("zero_optimization", {}).get("stage") == 3

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Collective under DeepSpeed ZeRO-3 (every rank calls it, as the Trainer does); the main process writes."""
        output_dir = output_dir or self.args.output_dir
        if self.tune == "full":
            config = self.accelerator.unwrap_model(self.model).config
            configs = [config, config.get_text_config()]
            training = [getattr(c, "use_cache", None) for c in configs]
            for c in configs:  # the saved model generates with its KV cache
                c.use_cache = True
            try:
                super().save_model(output_dir, _internal_call=_internal_call)
            finally:
                for c, value in zip(configs, training):
                    c.use_cache = value
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
