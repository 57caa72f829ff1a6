"""Training data for Qwen2.5-VL + MuNG: records, chat-template labels, batching, MMPR conversion."""

from .collator import QwenDataCollator
from .dataset import BadSample, QwenSupervisedDataset, load_records, to_sample
from .prompting import build_inference_inputs, encode_images, tokenize_conversation

__all__ = [
    "BadSample",
    "QwenDataCollator",
    "QwenSupervisedDataset",
    "build_inference_inputs",
    "encode_images",
    "load_records",
    "to_sample",
    "tokenize_conversation",
]
