"""Training data for any transformers VLM: conversation records → chat messages and images (``records``), labels on
the assistant turns only, independent of one template's quirks (``labels``), and batches through the family's own
processor (``collator``)."""

from .collator import ConversationCollator
from .labels import assistant_spans, labels_for_tokens
from .records import ConversationSample, read_sample

__all__ = ["ConversationCollator", "ConversationSample", "assistant_spans", "labels_for_tokens", "read_sample"]
