"""Training data for any transformers VLM: conversation records → chat messages and images (``records``), labels on
the assistant turns only, independent of one template's quirks (``labels``), and batches through the family's own
processor (``collator``), and the training set with the bad-sample policy (``dataset``)."""

from .collator import ConversationCollator
from .dataset import ConversationDataset
from .labels import assistant_spans, labels_for_tokens
from .records import ConversationSample, read_sample

__all__ = ["ConversationCollator", "ConversationDataset", "ConversationSample", "assistant_spans", "labels_for_tokens",
           "read_sample"]
