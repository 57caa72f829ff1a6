"""Training data for Qwen2.5-VL + MuNG: records, chat-template labels, batching, MMPR conversion."""

from importlib import import_module

# Each name loads its module on first use (PEP 562), so `mung convert mmpr --help` (convert_mmpr, in this package)
# imports no torch or transformers.
_HOMES = {
    "BadSample": "dataset",
    "QwenDataCollator": "collator",
    "QwenSupervisedDataset": "dataset",
    "build_inference_inputs": "prompting",
    "encode_images": "prompting",
    "load_records": "dataset",
    "to_sample": "dataset",
    "tokenize_conversation": "prompting",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
