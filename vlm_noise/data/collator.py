"""Batches of conversation samples through the family's own processor, with labels on the assistant turns."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from mung.bad_samples import BadSampleCause, BadSampleError
from noise_generator import IGNORE_INDEX

from ..prompting import adds_special_tokens, process
from .labels import align_labels, assistant_spans, labels_for_tokens
from .records import ConversationSample


class ConversationCollator:
    """``samples`` → the processor's batch (right padding) + ``labels`` (assistant text and its end of turn; -100
    elsewhere, padding included). Samples longer than ``max_length`` tokens (image tokens included) are refused."""

    def __init__(self, processor, max_length: Optional[int] = None):
        self.processor = processor
        self.max_length = max_length

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
        return batch
