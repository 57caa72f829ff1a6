"""Training data for Qwen2.5-VL + MuNG: records, chat-template labels, batching, MMPR conversion."""

from .collator import QwenDataCollator
from .dataset import BadSample, QwenSupervisedDataset, load_records, to_sample, tokenize_conversation

__all__ = ["BadSample", "QwenDataCollator", "QwenSupervisedDataset", "load_records", "to_sample", "tokenize_conversation"]
