"""Batching of Qwen2.5-VL training examples: dynamic right padding, images concatenated in sample order."""

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from noise_generator import IGNORE_INDEX
from mung.training.nonfinite import SAMPLE_IDS_KEY


@dataclass
class QwenDataCollator:
    """Pads ``input_ids`` (pad id), ``labels`` (-100), ``mm_token_type_ids`` (0) to the longest sample of the batch.

    ``pixel_values`` rows and ``image_grid_thw`` rows are concatenated in sample order, which is the order of the
    ``<|image_pad|>`` blocks in the flattened batch (what the model and its 3-D rope expect). Keep
    ``mm_token_type_ids``: without it Qwen2.5-VL silently falls back to 1-D positions. ``return_sample_ids`` adds
    ``sample_ids`` (each example's ``sample_id``, for error messages; a Trainer with ``NonFiniteGuardMixin`` removes
    it before the forward).
    """

    pad_token_id: int
    return_sample_ids: bool = False

    def __call__(self, examples: list[dict]) -> dict:
        if not examples:
            raise ValueError("Cannot collate an empty batch.")
        input_ids = pad_sequence([e["input_ids"] for e in examples], batch_first=True, padding_value=self.pad_token_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": pad_sequence(
                [torch.ones_like(e["input_ids"]) for e in examples], batch_first=True, padding_value=0
            ),
            "labels": pad_sequence([e["labels"] for e in examples], batch_first=True, padding_value=IGNORE_INDEX),
            "mm_token_type_ids": pad_sequence(
                [e["mm_token_type_ids"] for e in examples], batch_first=True, padding_value=0
            ),
        }
        with_images = [e for e in examples if "pixel_values" in e]
        if with_images:
            batch["pixel_values"] = torch.cat([e["pixel_values"] for e in with_images], dim=0)
            batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_images], dim=0)
        if self.return_sample_ids:
            batch[SAMPLE_IDS_KEY] = [e.get("sample_id") for e in examples]
        return batch
