"""Batches of conversation samples through the family's own processor, with labels on the assistant turns."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from transformers import PaliGemmaProcessor

from mung.bad_samples import BadSampleCause, BadSampleError
from mung.training.nonfinite import SAMPLE_IDS_KEY
from noise_generator import IGNORE_INDEX

from ..prompting import adds_special_tokens, process
from .labels import align_labels, assistant_spans, labels_for_tokens
from .records import ConversationSample


def causal_suffix(token_type_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """PaliGemma's token types for training: 0 (the bidirectional prefix) up to the first supervised token, 1 (causal)
    from there to the sample's last token, as its processor's ``suffix=`` encodes an answer. With the prompt's types
    alone every answer token would attend to the tokens it is trained to predict."""
    types = token_type_ids.clone()
    for row in range(labels.shape[0]):
        supervised = (labels[row] != IGNORE_INDEX).nonzero()
        if len(supervised):
            end = int(attention_mask[row].nonzero().max()) + 1
            types[row, int(supervised[0]):end] = 1
    return types


class ConversationCollator:
    """``samples`` → the processor's batch (right padding) + ``labels`` (assistant text and its end of turn; -100
    elsewhere, padding included). Samples longer than ``max_length`` tokens (image tokens included) are refused.

    ``dtype``: floating tensors (pixels) in the model's dtype; ``return_sample_ids``: each sample's name under
    ``sample_ids`` (training: error messages name the samples of a batch)."""

    def __init__(self, processor, max_length: Optional[int] = None, dtype: Optional[torch.dtype] = None,
                 return_sample_ids: bool = False):
        self.processor = processor
        self.max_length = max_length
        self.dtype = dtype
        self.return_sample_ids = return_sample_ids

    def __call__(self, samples: Sequence[ConversationSample]) -> dict[str, Any]:
        rendered = [assistant_spans(self.processor, sample.messages, sample.name) for sample in samples]
        texts = [text for text, _ in rendered]
        batch = process(self.processor, texts, [sample.images for sample in samples], padding_side="right")
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        special = adds_special_tokens(self.processor.tokenizer, texts)
        for row, ((text, spans), sample) in enumerate(zip(rendered, samples)):
            keep = batch["attention_mask"][row].bool()
            if self.max_length is not None and int(keep.sum()) > self.max_length:
                raise BadSampleError(f"{sample.name}: {int(keep.sum())} tokens with its images, more than "
                                     f"max_length={self.max_length}.", BadSampleCause.TOO_LONG)
            encoded = self.processor.tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
            text_labels = labels_for_tokens(encoded["offset_mapping"], encoded["input_ids"], spans)
            model_ids = batch["input_ids"][row][keep].tolist()
            labels[row, keep] = torch.tensor(align_labels(encoded["input_ids"], text_labels, model_ids, sample.name))
        batch["labels"] = labels
        if isinstance(self.processor, PaliGemmaProcessor) and "token_type_ids" in batch:
            batch["token_type_ids"] = causal_suffix(batch["token_type_ids"], labels, batch["attention_mask"])
        if self.dtype is not None:
            batch = {key: value.to(self.dtype) if torch.is_tensor(value) and value.is_floating_point() else value
                     for key, value in batch.items()}
        if self.return_sample_ids:
            batch[SAMPLE_IDS_KEY] = [sample.name for sample in samples]
        return batch
