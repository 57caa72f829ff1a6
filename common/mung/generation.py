"""Generation settings, stop strings and the terminal streamer shared by evaluation, chat and serving."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, TextIO

import torch
from transformers import StoppingCriteria, TextStreamer


@dataclass
class GenerationSettings:
    """Sampling at ``temperature > 0`` (with ``top_p`` / ``top_k``), greedy otherwise; beams; new-token budget;
    an optional repetition penalty. ``fit_reply``: the budget was not asked for (a default), so a chat or a request
    may get fewer new tokens when the model's context leaves fewer (``context.check_fits``); an asked-for budget
    that does not fit is refused instead."""

    temperature: float = 0.2
    top_p: Optional[float] = None
    num_beams: int = 1
    max_new_tokens: int = 128
    top_k: Optional[int] = None
    repetition_penalty: Optional[float] = None
    fit_reply: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}.")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.num_beams < 1 or self.max_new_tokens < 1:
            raise ValueError("num_beams and max_new_tokens must be at least 1.")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no top-k filter), got {self.top_k}.")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}.")

    @classmethod
    def from_args(cls, args: Any, default_max_new_tokens: int = 128) -> "GenerationSettings":
        """From the flags; ``--max-new-tokens`` left unset (None) means ``default_max_new_tokens`` or what the
        context leaves."""
        asked = args.max_new_tokens
        return cls(temperature=args.temperature, top_p=getattr(args, "top_p", None),
                   num_beams=getattr(args, "num_beams", 1),
                   max_new_tokens=default_max_new_tokens if asked is None else asked, fit_reply=asked is None)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens, "use_cache": True}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
            if self.top_p is not None:
                kwargs["top_p"] = self.top_p
            if self.top_k is not None:
                kwargs["top_k"] = self.top_k
        else:  # greedy: clear sampling defaults a checkpoint's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to the first stop string, stripped."""
    cut = len(text)
    for stop in stop_strings:
        if stop and stop in text:
            cut = min(cut, text.index(stop))
    return text[:cut].strip()


class StopStringCriteria(StoppingCriteria):
    """Stop a row once its generated text contains one of ``stop_strings`` (checked on the last few tokens).

    The generated part starts where the first call saw one new token, so it works whether ``generate`` returns the
    prompt too or only the new tokens.
    """

    def __init__(self, stop_strings: Sequence[str], tokenizer: Any):
        self.stop_strings = [s for s in ([stop_strings] if isinstance(stop_strings, str) else stop_strings) if s]
        self.tokenizer = tokenizer
        self.token_ids = [torch.tensor(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in self.stop_strings]
        self.window = max((len(ids) for ids in self.token_ids), default=1) + 2
        self.start_len: Optional[int] = None

    def _row_done(self, row: torch.Tensor) -> bool:
        for ids in self.token_ids:
            if len(ids) and row.shape[0] >= len(ids) and torch.equal(row[-len(ids):].cpu(), ids):
                return True
        text = self.tokenizer.decode(row[-self.window:].tolist(), skip_special_tokens=False)
        return any(stop in text for stop in self.stop_strings)

    def __call__(self, input_ids: torch.LongTensor, scores: Optional[torch.FloatTensor] = None, **kwargs) -> torch.BoolTensor:
        if self.start_len is None:
            self.start_len = input_ids.shape[1] - 1
        done = [self._row_done(row) for row in input_ids[:, self.start_len:]]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class StopStringStreamer(TextStreamer):
    """``TextStreamer`` that never prints a stop string: text that might begin one is held back, and everything
    from a stop string on is dropped (generation stops there too, a few tokens later at most). ``on_text`` (when
    given) receives each printable piece instead of ``out``."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str] = (), out: Optional[TextIO] = None,
                 on_text: Any = None, skip_prompt: bool = True, **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt=skip_prompt, **decode_kwargs)
        stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or [])
        self.stop_strings = [s for s in stop_strings if s]
        self.out = out if out is not None else sys.stdout
        self.on_text = on_text
        self.pending = ""
        self.stopped = False

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.on_text is not None:
            self.on_text(text)
        else:
            self.out.write(text)

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self.stop_strings:
            for n in range(min(len(text), len(stop) - 1), longest, -1):
                if stop.startswith(text[-n:]):
                    longest = n
                    break
        return longest

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not self.stopped:
            self.pending += text
            found = [self.pending.index(s) for s in self.stop_strings if s in self.pending]
            if found:
                self._emit(self.pending[: min(found)])
                self.pending, self.stopped = "", True
            else:
                keep = 0 if stream_end else self._held_back(self.pending)
                self._emit(self.pending[: len(self.pending) - keep])
                self.pending = self.pending[len(self.pending) - keep:]
        if stream_end:
            if self.on_text is None:
                self.out.write("\n")
            self.pending, self.stopped = "", False
        if self.on_text is None:
            self.out.flush()
