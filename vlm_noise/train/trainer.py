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

import torch
from transformers import Trainer

from mung.training.trainer import MungTrainerMixin, TunedCheckpointsMixin
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


class VLMTrainer(TunedCheckpointsMixin, MungTrainerMixin, MeanOverDrawsMixin, Trainer):
    """``Trainer`` that saves generator / adapter / full weights per ``tune`` (see the module docstring)."""

    def save_full(self, output_dir: str, _internal_call: bool) -> None:
        """The whole model with its KV cache on in the saved configs (training runs without it), then the generator
        files beside it."""
        config = self.accelerator.unwrap_model(self.model).config
        configs = [config, config.get_text_config()]
        training = [getattr(c, "use_cache", None) for c in configs]
        for c in configs:
            c.use_cache = True
        try:
            super().save_full(output_dir, _internal_call)
        finally:
            for c, value in zip(configs, training):
                c.use_cache = value
