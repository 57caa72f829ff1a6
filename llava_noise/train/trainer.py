"""``LLaVATrainer``: the shared ``MungTrainerMixin`` (NaN/inf guard, parameter groups, generator saved and restored)
with the projector's own learning rate, modality-grouped sampling, and LLaVA's checkpoint files, so that every
directory (``checkpoint-N`` included) can be loaded and resumed from."""

from __future__ import annotations

import logging
import os
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler
from transformers import Trainer

from mung.checkpoints import NON_LORA_FILE, PROJECTOR_FILE, load_named_tensors, read_tensor_file
from mung.files import save_pretrained_atomically
from mung.training.distributed import gather_parameters
from mung.training.trainer import MungTrainerMixin

from ..model.checkpoint_io import load_projector_file, save_non_lora_trainables, save_projector

logger = logging.getLogger(__name__)


def modality_grouped_indices(lengths: list[int], megabatch_size: int, generator: Optional[torch.Generator] = None) -> list[int]:
    """Shuffled indices in which every full megabatch holds one modality only (image: length > 0, text-only: < 0),
    longest first inside a megabatch; the leftovers of both modalities come last, together."""
    megabatches, leftovers = [], []
    for group in ([i for i, n in enumerate(lengths) if n > 0], [i for i, n in enumerate(lengths) if n <= 0]):
        order = [group[j] for j in torch.randperm(len(group), generator=generator).tolist()]
        chunks = [order[k : k + megabatch_size] for k in range(0, len(order), megabatch_size)]
        if chunks and len(chunks[-1]) < megabatch_size:
            leftovers.extend(chunks.pop())
        megabatches.extend(sorted(chunk, key=lambda i: -abs(lengths[i])) for chunk in chunks)
    shuffled = [megabatches[k] for k in torch.randperm(len(megabatches), generator=generator).tolist()]
    return [i for chunk in shuffled for i in chunk] + leftovers


class ModalityLengthGroupedSampler(Sampler):
    """``--group_by_modality_length``: batches never mix samples with and without images."""

    def __init__(self, lengths: list[int], batch_size: int, world_size: int, seed: int = 0):
        self.lengths = lengths
        self.megabatch_size = batch_size * world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped_indices(self.lengths, self.megabatch_size, generator))


class LLaVATrainer(MungTrainerMixin, Trainer):
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if getattr(self.args, "group_by_modality_length", False) and dataset is not None:
            return ModalityLengthGroupedSampler(
                dataset.modality_lengths,
                self.args.train_batch_size,
                self.args.world_size * self.args.gradient_accumulation_steps,
                seed=self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def lr_overrides(self) -> dict[str, Optional[float]]:
        return {**super().lr_overrides(), "mm_projector": getattr(self.args, "mm_projector_lr", None)}

    # --- saving -------------------------------------------------------------------------------------------------
    def _mode(self) -> str:
        if getattr(self.args, "lora_enable", False):
            return "lora"
        if getattr(self.model.config, "tune_mm_mlp_adapter", False):
            return "projector"
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if trainable and all("noise_generator." in n for n in trainable):
            return "generator"
        return "full"

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """LoRA: adapter + ``non_lora_trainables.bin`` + config; projector-only: ``mm_projector.bin`` + config;
        generator-only (LLM and projector frozen): config + the generator files; full: the HF weights. Every mode also writes the generator-only files. Collective under ZeRO-3."""
        output_dir = output_dir or self.args.output_dir
        main = self.args.should_save
        mode = self._mode()
        if main:
            os.makedirs(output_dir, exist_ok=True)
        if mode == "lora":
            lora_state = gather_parameters((n, p) for n, p in self.model.named_parameters() if "lora_" in n)
            save_non_lora_trainables(self.model, output_dir, is_main_process=main)
            if main:
                # Embeddings that train are in non_lora_trainables.bin; peft's default ("auto") would only re-read the
                # base's config as a LlavaConfig to compare vocabulary sizes, and warn about the model type.
                save_pretrained_atomically(self.model, output_dir, state_dict=lora_state, save_embedding_layers=False)
        elif mode == "projector":
            save_projector(self.model, output_dir, is_main_process=main)
        elif mode == "full":
            super().save_model(output_dir, _internal_call=_internal_call)
        self.save_generator(output_dir)
        if main and mode != "full":
            config = self.model.config
            config.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def load_trained_weights(self, checkpoint: str, model: torch.nn.Module) -> None:
        """Resume (after the generator, which ``MungTrainerMixin`` restores): the projector file of projector-only
        runs, nothing more for generator-only runs, the adapter and ``non_lora_trainables.bin`` of LoRA runs, the
        full weights otherwise."""
        mode = self._mode()
        if mode == "projector":
            load_projector_file(model.get_model().mm_projector, os.path.join(checkpoint, PROJECTOR_FILE))
        if mode in ("projector", "generator"):
            return
        super().load_trained_weights(checkpoint, model)
        if mode == "lora":
            path = os.path.join(checkpoint, NON_LORA_FILE)
            load_named_tensors(model, read_tensor_file(path), path)
