"""The answers file of an evaluation: never written over the questions, never left half-written, resumable.

Answers go to ``<answers-file>.partial`` as they come (one line per question, flushed per batch; its first line
describes the run); at the end the complete file is written beside the answers file and renamed over it, and the
partial file is removed. So a crash part-way leaves the previous answers file as it was, and the next run with the
same settings continues the partial file: questions answered there are not asked again (questions skipped there
are). A partial file of another run (other model, noise, seed or generation settings) is refused, naming what
differs. One evaluation at a time writes an answers file: it holds ``<answers-file>.lock`` (``answers_lock``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .files import check_output_path, write_jsonl
from .locks import OneWriterLock

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
HEADER_KEY = "mung_partial_answers"


class AnswersFileBusy(RuntimeError):
    """Another evaluation is writing the same answers file; the message names it."""


def check_answers_path(answers_file: str, inputs: dict[str, Any]) -> None:
    """Before anything is read: the answers file, its ``.partial`` file and its lock must not be, nor sit inside, any
    of the ``inputs`` (flag → path: the question file, the image folder, the model), nor be a folder
    (``files.check_output_path``)."""
    check_output_path(answers_file, "--answers-file", inputs,
                      also={"its partial answers": answers_file + PARTIAL_SUFFIX,
                            "its lock": answers_file + LOCK_SUFFIX})


def answers_lock(answers_file: str) -> OneWriterLock:
    """The one-writer lock of an answers file, ``<answers-file>.lock`` (``locks.OneWriterLock``): a second evaluation
    writing the same file stops at once naming the first."""
    return OneWriterLock(answers_file + LOCK_SUFFIX, "--answers-file", answers_file, "evaluation", AnswersFileBusy)


def question_keys(questions: Sequence[Any]) -> list[str]:
    """One key per question: its ``question_id``, its extra record fields (e.g. MMBench's ``round_id``) and, for
    repeats of both, its occurrence number."""
    seen: Counter = Counter()
    keys = []
    for question in questions:
        base = json.dumps([question.question_id, question.extra], sort_keys=True, default=str)
        keys.append(f"{base}#{seen[base]}")
        seen[base] += 1
    return keys


class PartialAnswers:
    """``<answers_file>.partial`` of a run described by ``run`` (a JSON-able dict); see the module docstring."""

    def __init__(self, answers_file: str, run: dict, resume: bool = True):
        self.answers_file = Path(answers_file)
        self.path = Path(str(answers_file) + PARTIAL_SUFFIX)
        self.run = json.loads(json.dumps(run, sort_keys=True, default=str))
        self.resume = resume
        self._handle = None

    def _read(self) -> dict[str, dict]:
        """Key → record of the answered (not skipped) questions of an earlier partial file of this run."""
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0])[HEADER_KEY] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError):
            header = None
        if header is None:
            raise ValueError(f"{self.path} is not a partial answers file of this tool; delete it or move it away.")
        for name in sorted(set(header) | set(self.run)):
            if header.get(name) != self.run.get(name):
                raise ValueError(
                    f"{self.path} holds the answers of another run ({name}: {header.get(name)!r} there, "
                    f"{self.run.get(name)!r} now). Run with the same settings to continue it, or delete it (or pass "
                    "--no-resume) to start over."
                )
        answered = {}
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # the line being written when the run stopped
                raise ValueError(f"{self.path}:{number}: not valid JSON; delete the file to start over.") from None
            if not entry["record"].get("metadata", {}).get("skipped"):
                answered[entry["key"]] = entry["record"]
        return answered

    def start(self) -> dict[str, dict]:
        """Open the partial file for this run; returns the answers an earlier, interrupted run left (key → record)."""
        answered = self._read() if self.resume and self.path.exists() else {}
        if answered:
            logger.warning("Resuming %s: %d question(s) already answered there are not asked again.", self.path,
                           len(answered))
        lines = [{HEADER_KEY: self.run}] + [{"key": key, "record": record} for key, record in answered.items()]
        write_jsonl(self.path, lines)  # atomically: the earlier partial file stays whole until this one is
        self._handle = open(self.path, "a", encoding="utf-8")
        return answered

    def add(self, key: str, record: dict) -> None:
        self._handle.write(json.dumps({"key": key, "record": record}, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def finish(self, records: Sequence[dict]) -> None:
        """Write the complete answers file (atomically) and remove the partial file."""
        write_jsonl(self.answers_file, records)
        self._handle.close()
        self.path.unlink()
