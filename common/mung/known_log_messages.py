"""Drop log lines that dependencies print on every run although nothing is wrong, one known message at a time.

Each entry names the logger, the start of the message and a detail that proves it is the harmless case; a record
that does not match all three (the same warning for another reason, or any other message) is logged as usual.

- bitsandbytes (imported by peft, which transformers' Trainer imports, so even ``--help`` printed it) looks for the
  optional ``kernels`` package for a faster 4-bit matmul on CPUs with AVX512-BF16 and warns when it is not installed.
  Nothing here runs 4-bit matmuls on CPU for speed, so a missing ``kernels`` is expected; a ``kernels`` that is
  installed but fails still shows.
"""

from __future__ import annotations

import logging
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
    for name in sorted({m.logger for m in KNOWN_HARMLESS}):
        target = logging.getLogger(name)
        if not any(isinstance(f, KnownMessageFilter) for f in target.filters):
            target.addFilter(KnownMessageFilter(tuple(m for m in KNOWN_HARMLESS if m.logger == name)))
