"""Drop log lines that dependencies print on every run although nothing is wrong, one known message at a time.

Each entry names the logger, the start of the message and a detail that proves it is the harmless case; a record
that does not match all three (the same warning for another reason, or any other message) is logged as usual.

- bitsandbytes (imported by peft, which transformers' Trainer imports, so even ``--help`` printed it) looks for the
  optional ``kernels`` package for a faster 4-bit matmul on CPUs with AVX512-BF16 and warns when it is not installed.
  Nothing here runs 4-bit matmuls on CPU for speed, so a missing ``kernels`` is expected; a ``kernels`` that is
  installed but fails still shows.
- peft asks every model for ``is_gradient_checkpointing``, which transformers 5 deprecated (a FutureWarning on every
  LoRA run, evaluation and merge); nothing for a user to change.
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple


class KnownMessage(NamedTuple):
    logger: str
    starts_with: str
    contains: str


KNOWN_HARMLESS = (
    KnownMessage(
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community",
        "No module named 'kernels'",
    ),
)

KNOWN_HARMLESS_WARNINGS = (
    # (category, start of the message as a regular expression)
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
)


class KnownMessageFilter(logging.Filter):
    """Filter for one logger: drops the records that match one of its known harmless messages."""

    def __init__(self, messages: tuple[KnownMessage, ...]):
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(text.startswith(m.starts_with) and m.contains in text for m in self.messages)


def install_known_message_filters() -> None:
    """Attach the filters (idempotent). Call it before the dependencies are imported: some log while importing."""
    for category, message in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in sorted({m.logger for m in KNOWN_HARMLESS}):
        target = logging.getLogger(name)
        if not any(isinstance(f, KnownMessageFilter) for f in target.filters):
            target.addFilter(KnownMessageFilter(tuple(m for m in KNOWN_HARMLESS if m.logger == name)))
