"""A token streamer for the terminal that never prints the template's stop string."""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from transformers import TextStreamer


class StopStringStreamer(TextStreamer):
    """``TextStreamer`` that holds back text that might be the start of ``stop_str`` and drops everything from
    the stop string on (generation stops there too, a few tokens later at most)."""

    def __init__(self, tokenizer, stop_str: Optional[str], out: TextIO = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
        self.stop_str = stop_str or None
        self.out = out if out is not None else sys.stdout
        self.pending = ""
        self.stopped = False

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of the stop string."""
        if not self.stop_str:
            return 0
        for n in range(min(len(text), len(self.stop_str) - 1), 0, -1):
            if self.stop_str.startswith(text[-n:]):
                return n
        return 0

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not self.stopped:
            self.pending += text
            if self.stop_str and self.stop_str in self.pending:
                self.out.write(self.pending[: self.pending.index(self.stop_str)])
                self.pending, self.stopped = "", True
            else:
                keep = 0 if stream_end else self._held_back(self.pending)
                self.out.write(self.pending[: len(self.pending) - keep])
                self.pending = self.pending[len(self.pending) - keep:]
        if stream_end:
            self.out.write("\n")
            self.pending, self.stopped = "", False
        self.out.flush()
