"""Bad training samples, for every backbone's dataset: why a sample is bad, skipping it, and stopping when too many are.

A dataset raises a ``BadSampleError`` (with its ``BadSampleCause``) for a sample it cannot use and hands its item
loader to ``BadSamplePolicy.first_good``, which returns the item, or under ``--on_bad_sample skip`` the next good one.
The policy keeps one status byte per sample in shared memory, so the counts are those of the whole process and its
DataLoader workers, and a sample found bad is never loaded again. It

- logs the first ``warn_first`` bad samples in full, then one summary line every ``summary_every`` more;
- stops the run (``TooManyBadSamples``) once more than ``--max_bad_sample_share`` of the samples looked at were bad,
  naming the most common cause and what to check (a wrong ``--image_folder`` shows up as "missing image" for every
  image sample). During training the share is judged once ``min(len(dataset), 50)`` samples were looked at and at
  least 5 were bad (a share of fewer is mostly chance: one bad sample in the first 50 is already 2%); at the end of
  training (``BadSampleCallback``) it is judged on everything looked at;
- logs one summary line at the end of training.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from typing import Any, Callable, Optional

import torch
from transformers import TrainerCallback

from .flag_choices import ON_BAD_SAMPLE

logger = logging.getLogger(__name__)

DEFAULT_MAX_BAD_SAMPLE_SHARE = 0.01
MIN_SAMPLES_BEFORE_JUDGING = 50
MIN_BAD_BEFORE_JUDGING = 5
MAX_BAD_SAMPLE_SHARE_HELP = (
    "With --on_bad_sample skip: stop with an error naming the most common cause once more than this share of the "
    "samples looked at were bad (judged during training once min(dataset size, 50) samples were looked at and 5 "
    "were bad, and at the end of training on all). 1 never stops."
)


class BadSampleCause(Enum):
    """Why a sample cannot be used (the value reads as a noun phrase in messages)."""

    MISSING_IMAGE = "missing image"
    UNREADABLE_IMAGE = "unreadable image"
    FORMAT = "bad format"
    TOO_LONG = "too long"


CAUSES = tuple(BadSampleCause)
UNSEEN, GOOD = 0, 1  # status bytes; a bad sample's byte is FIRST_BAD + its cause's index in CAUSES
FIRST_BAD = 2


class BadSampleError(ValueError):
    """A training sample that cannot be used; the message names it and ``cause`` says why."""

    def __init__(self, message: str, cause: BadSampleCause = BadSampleCause.FORMAT):
        super().__init__(message)
        self.cause = cause


class TooManyBadSamples(RuntimeError):
    """More than ``--max_bad_sample_share`` of the samples looked at were bad; the message says what to check."""


def check_bad_sample_flags(on_bad_sample: str, max_share: float) -> None:
    """Refuse ``--on_bad_sample`` / ``--max_bad_sample_share`` values that cannot work (before any weights load)."""
    if on_bad_sample not in ON_BAD_SAMPLE:
        raise ValueError(f"--on_bad_sample {on_bad_sample!r} is not supported; use {' or '.join(ON_BAD_SAMPLE)}.")
    if not 0 <= max_share <= 1:
        raise ValueError(f"--max_bad_sample_share must be between 0 and 1 (a share, 0.01 = 1%), got {max_share}.")


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


class BadSamplePolicy:
    """Skip-or-raise for bad samples, counted across DataLoader workers, with rate-limited warnings and a stop
    threshold (see the module docstring). ``image_folder`` and ``source`` (the data file) go into the hints."""

    def __init__(
        self,
        num_samples: int,
        on_bad_sample: str = "skip",
        max_share: float = DEFAULT_MAX_BAD_SAMPLE_SHARE,
        image_folder: Optional[str | os.PathLike] = None,
        source: str = "the data file",
        warn_first: int = 5,
        summary_every: int = 100,
    ):
        check_bad_sample_flags(on_bad_sample, max_share)
        self.num_samples = num_samples
        self.on_bad_sample = on_bad_sample
        self.max_share = max_share
        self.image_folder = None if image_folder is None else str(image_folder)
        self.source = source
        self.warn_first = warn_first
        self.summary_every = summary_every
        self.min_seen = min(num_samples, MIN_SAMPLES_BEFORE_JUDGING)
        # Shared memory: DataLoader workers (forked or spawned) write into the same bytes as the main process.
        self.status = torch.zeros(num_samples, dtype=torch.uint8).share_memory_()
        self.first_errors: dict[BadSampleCause, BadSampleError] = {}  # per process: for hints
        self._judge_when_enough_seen = False

    # --- counting -------------------------------------------------------------------------------------------------
    def counts(self) -> tuple[int, dict[BadSampleCause, int]]:
        """(samples looked at, bad samples per cause) so far, over this process and its workers."""
        tally = torch.bincount(self.status, minlength=FIRST_BAD + len(CAUSES)).tolist()
        by_cause = {cause: tally[FIRST_BAD + k] for k, cause in enumerate(CAUSES)}
        return sum(tally[GOOD:]), by_cause

    @property
    def skipped(self) -> int:
        """Distinct bad samples met so far."""
        return int((self.status >= FIRST_BAD).sum())

    def is_bad(self, index: int) -> bool:
        return int(self.status[index]) >= FIRST_BAD

    def record_good(self, index: int) -> None:
        if int(self.status[index]) == UNSEEN:
            self.status[index] = GOOD
            if self._judge_when_enough_seen:
                looked, by_cause = self.counts()
                if looked >= self.min_seen:
                    self._judge_when_enough_seen = False
                    self._judge(looked, by_cause)  # enough bad ones were met before enough samples

    def record_bad(self, index: int, err: BadSampleError) -> None:
        """Raise ``err`` (``raise``), or count it, warn (rate-limited) and stop if the share is now too high."""
        if self.on_bad_sample == "raise":
            raise err
        if self.is_bad(index):
            return
        self.status[index] = FIRST_BAD + CAUSES.index(err.cause)
        self.first_errors.setdefault(err.cause, err)
        looked, by_cause = self.counts()
        bad = sum(by_cause.values())
        if bad <= self.warn_first:
            more = f"; further ones get a summary line every {self.summary_every}" if bad == self.warn_first else ""
            logger.warning("Skipping bad sample (%d skipped so far%s): %s", bad, more, err)
        elif bad % self.summary_every == 0:
            logger.warning("Skipping bad samples: %s", self._tally(looked, by_cause))
        if bad < MIN_BAD_BEFORE_JUDGING:
            return
        if looked >= self.min_seen:
            self._judge(looked, by_cause)
        else:
            self._judge_when_enough_seen = True

    def first_good(self, index: int, load: Callable[[int], Any]) -> Any:
        """``load(index)``, or under ``skip`` the item of the next good sample after it (wrapping around)."""
        for offset in range(self.num_samples):
            current = (index + offset) % self.num_samples
            if self.is_bad(current):
                continue
            try:
                item = load(current)
            except BadSampleError as err:
                self.record_bad(current, err)
                continue
            self.record_good(current)
            return item
        raise ValueError(f"{self.source}: every sample is bad (see the warnings above).")

    # --- judging and reporting ------------------------------------------------------------------------------------
    def _tally(self, looked: int, by_cause: dict[BadSampleCause, int]) -> str:
        bad = sum(by_cause.values())
        causes = ", ".join(f"{n} {cause.value}" for cause, n in sorted(by_cause.items(), key=lambda x: -x[1]) if n)
        return f"{bad} of {looked} samples looked at were skipped ({_share(bad, looked)}): {causes}"

    def _judge(self, looked: int, by_cause: dict[BadSampleCause, int], when: str = "so far") -> None:
        bad = sum(by_cause.values())
        if not looked or bad / looked <= self.max_share:
            return
        raise TooManyBadSamples(
            f"Stopping: {bad} of the {looked} samples looked at {when} were bad ({_share(bad, looked)}), more than "
            f"--max_bad_sample_share {self.max_share} allows. {self.hint(by_cause)} (--max_bad_sample_share 1 skips "
            "them whatever their share; --on_bad_sample raise stops at the first.)"
        )

    def hint(self, by_cause: dict[BadSampleCause, int]) -> str:
        """What to check, for the most common cause (with the first such error seen in this process)."""
        bad = sum(by_cause.values())
        cause, count = max(by_cause.items(), key=lambda x: x[1])
        first = self.first_errors.get(cause)
        example = f" First: {first}" if first is not None else " (see the warnings above)"
        if cause is BadSampleCause.MISSING_IMAGE:
            if self.image_folder is None:
                folder = f"no --image_folder was given (paths are relative to {os.getcwd()})"
            else:
                state = "exists" if os.path.isdir(self.image_folder) else "does not exist"
                folder = (f"images are looked up under --image_folder {self.image_folder} (IMAGE_FOLDER in the "
                          f"recipes), which {state}")
            return (f"{count} of the {bad} skipped samples have a missing image; {folder}. Is --image_folder right?"
                    + example)
        what = {
            BadSampleCause.UNREADABLE_IMAGE: "have an image that cannot be read; re-create those files or remove the samples.",
            BadSampleCause.FORMAT: f"are malformed; fix them in {self.source}.",
            BadSampleCause.TOO_LONG: "are too long for --model_max_length; raise it or shorten the samples.",
        }[cause]
        return f"{count} of the {bad} skipped samples {what}" + example

    def finish(self) -> None:
        """End of training: stop if the share of bad samples is too high; otherwise log one summary if any."""
        looked, by_cause = self.counts()
        if not sum(by_cause.values()):
            return
        self._judge(looked, by_cause, when="in this run")
        logger.warning("Bad samples: %s. %s", self._tally(looked, by_cause), self.hint(by_cause))


class BadSampleCallback(TrainerCallback):
    """Runs ``BadSamplePolicy.finish`` once: at the last optimizer step, before the Trainer saves its final
    checkpoint (so a run stopped for bad data never looks finished), or at the end of training."""

    def __init__(self, policy: BadSamplePolicy):
        self.policy = policy
        self.done = False

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.policy.finish()

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            self._finish()

    def on_train_end(self, args, state, control, **kwargs):
        self._finish()
