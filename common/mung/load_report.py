"""Quiet transformers' loading report when the only missing weights are restored right after loading.

Loading a base model for a LoRA / projector-only / generator-only checkpoint makes ``from_pretrained`` report the
projector and generator weights as MISSING ("newly initialized"), although the builder copies them in from the
checkpoint a moment later (strictly). That report misleads users, so it is held back; it is logged after all when the
loading info shows anything else (another missing weight, an unexpected or mismatched one).

    with HeldLoadReport(("mm_projector.", "noise_generator.")) as report:
        model, info = Model.from_pretrained(path, output_loading_info=True)
    report.release_unless_expected(info)
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

REPORT_LOGGER = "transformers.modeling_utils"
REPORT_MARK = "LOAD REPORT"


class HeldLoadReport(logging.Filter):
    """Context manager: holds back transformers' load report logged inside the block (see the module docstring)."""

    def __init__(self, restored_fragments: Sequence[str]):
        super().__init__()
        self.restored_fragments = tuple(restored_fragments)
        self.held: list[logging.LogRecord] = []
        self._logger = logging.getLogger(REPORT_LOGGER)

    def filter(self, record: logging.LogRecord) -> bool:
        if REPORT_MARK in record.getMessage():
            self.held.append(record)
            return False
        return True

    def __enter__(self) -> "HeldLoadReport":
        self._logger.addFilter(self)
        return self

    def __exit__(self, *exc_info) -> None:
        self._logger.removeFilter(self)
        if exc_info[0] is not None:
            self.release()  # loading failed: the report may explain why

    def only_expected(self, info: Mapping) -> bool:
        """True when every missing key is one the caller restores and nothing is unexpected or mismatched."""
        missing = info.get("missing_keys", ())
        restored = all(any(fragment in key for fragment in self.restored_fragments) for key in missing)
        return restored and not info.get("unexpected_keys") and not info.get("mismatched_keys")

    def release_unless_expected(self, info: Mapping) -> None:
        if not self.only_expected(info):
            self.release()
        self.held = []

    def discard(self) -> None:
        """Forget the held report: everything it called missing was restored."""
        self.held = []

    def release(self) -> None:
        for record in self.held:
            self._logger.handle(record)
        self.held = []
