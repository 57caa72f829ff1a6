"""Where a run stands in ``--output_dir``: the newest complete ``checkpoint-N`` to resume from, whether the run there is
already finished (then there is nothing to do), and ``--overwrite_output_dir`` (clear the earlier run first)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

TRAINER_STATE_FILE = "trainer_state.json"  # the Trainer writes it last into checkpoint-N; save_state() at the end
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Optional[str]:
    """The newest ``checkpoint-N`` in ``output_dir`` that was written to the end (holds trainer_state.json, which
    the Trainer writes last), or None. Newer incomplete ones (a run killed while saving) are skipped with a warning."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for path in folder.iterdir():
        match = CHECKPOINT_RE.fullmatch(path.name)
        if match and path.is_dir():
            steps.append((int(match.group(1)), path))
    for _, path in sorted(steps, reverse=True):
        if _readable_state(path / TRAINER_STATE_FILE):
            return str(path)
        logger.warning(
            "Not resuming from %s: it has no complete %s (the run stopped while saving it).", path, TRAINER_STATE_FILE
        )
    return None


def _readable_state(path: Path) -> bool:
    """``path`` is a trainer_state.json written to the end (a full disk can leave half of one)."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def _names_a_checkpoint(resume_from_checkpoint: Optional[str]) -> bool:
    """``--resume_from_checkpoint PATH`` (rather than ``last``/``true``/nothing: the newest one in output_dir)."""
    return bool(resume_from_checkpoint) and resume_from_checkpoint.lower() not in ("last", "true")


def check_overwrite_flags(resume_from_checkpoint: Optional[str], overwrite_output_dir: bool) -> None:
    if overwrite_output_dir and _names_a_checkpoint(resume_from_checkpoint):
        raise ValueError(
            f"--overwrite_output_dir starts from scratch but --resume_from_checkpoint {resume_from_checkpoint} asks to "
            "continue a run; pass one of them."
        )


def checkpoint_to_resume(
    resume_from_checkpoint: Optional[str], output_dir: str | os.PathLike, overwrite_output_dir: bool = False
) -> Optional[str]:
    """What to resume from: ``--resume_from_checkpoint PATH`` as given; ``last``/``true`` or nothing: the newest
    complete ``checkpoint-N`` in ``--output_dir`` if there is one (as LLaVA users expect), else None (fresh start).
    ``--overwrite_output_dir``: None (start from scratch)."""
    check_overwrite_flags(resume_from_checkpoint, overwrite_output_dir)
    if overwrite_output_dir:
        return None
    if _names_a_checkpoint(resume_from_checkpoint):
        if not Path(resume_from_checkpoint, TRAINER_STATE_FILE).is_file():
            raise FileNotFoundError(
                f"--resume_from_checkpoint {resume_from_checkpoint}: no {TRAINER_STATE_FILE} there; pass a complete "
                "checkpoint-N folder of an earlier run (or leave the flag out to resume from the newest one in "
                "--output_dir)."
            )
        return resume_from_checkpoint
    found = last_complete_checkpoint(output_dir)
    if found:
        logger.info("Resuming from %s (the newest complete checkpoint in %s).", found, output_dir)
    return found


@dataclass(frozen=True)
class RunProgress:
    """Where a run stood when ``folder``'s trainer_state.json was written."""

    folder: Path
    global_step: int
    max_steps: int

    @property
    def finished(self) -> bool:
        return 0 < self.max_steps <= self.global_step


def read_progress(folder: str | os.PathLike) -> Optional[RunProgress]:
    """The progress recorded in ``folder/trainer_state.json``, or None without one (or without step counts)."""
    path = Path(folder, TRAINER_STATE_FILE)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON (line {err.lineno}: {err.msg}); delete that folder's {TRAINER_STATE_FILE} or "
            "pass --overwrite_output_dir True to start again."
        ) from None
    step, total = state.get("global_step"), state.get("max_steps")
    if not isinstance(step, int) or not isinstance(total, int):
        return None
    return RunProgress(Path(folder), step, total)


def finished_run_message(
    output_dir: str | os.PathLike, resume_from_checkpoint: Optional[str] = None, max_steps: int = -1
) -> Optional[str]:
    """What to say (and then stop, successfully) when this run has nothing left to do, else None.

    The run is finished when the newest record of it — the final ``trainer_state.json`` in ``output_dir``
    (``trainer.save_state()``) or that of its newest complete ``checkpoint-N`` (or of ``--resume_from_checkpoint``)
    — has reached its ``max_steps``, and ``--max_steps`` (``max_steps``) does not ask for more steps than that.
    Resuming such a run would train one more step at learning rate 0 and write another checkpoint.
    """
    if _names_a_checkpoint(resume_from_checkpoint):
        records = [read_progress(resume_from_checkpoint)]
        where = f"--resume_from_checkpoint {resume_from_checkpoint} is"
    else:
        newest = last_complete_checkpoint(output_dir)
        if newest and read_progress(newest) is None:
            return None  # its state has no step counts: resume from it as before
        records = [read_progress(output_dir), read_progress(newest) if newest else None]
        where = f"output_dir {output_dir} already holds"
    records = [record for record in records if record is not None]
    if not records:
        return None
    latest = max(records, key=lambda record: record.global_step)
    if not latest.finished or max_steps > latest.global_step:
        return None
    return (
        f"{where} a finished run (step {latest.global_step} of {latest.max_steps}); nothing to do. Use "
        "--overwrite_output_dir True to train again from scratch, or a new --output_dir."
    )


def clear_earlier_run(output_dir: str | os.PathLike) -> list[str]:
    """``--overwrite_output_dir``: remove the earlier run's ``checkpoint-N`` folders and final trainer_state.json,
    so that neither this run nor a later resume picks them up (other files are overwritten by the new saves).
    Returns what was removed; call it on the main process only."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and CHECKPOINT_RE.fullmatch(path.name):
            shutil.rmtree(path)
            removed.append(path.name)
    if (folder / TRAINER_STATE_FILE).is_file():
        (folder / TRAINER_STATE_FILE).unlink()
        removed.append(TRAINER_STATE_FILE)
    if removed:
        logger.info("--overwrite_output_dir: removed the earlier run's %s from %s.", ", ".join(removed), folder)
    return removed


def finished_or_cleared(training_args) -> Optional[str]:
    """Before anything loads: the message of ``finished_run_message`` when this run has nothing to do (the entry
    point prints it and returns), else None; with ``--overwrite_output_dir`` the earlier run is cleared first (main
    process) and None is returned."""
    if training_args.overwrite_output_dir:
        check_overwrite_flags(training_args.resume_from_checkpoint, True)
        if training_args.should_save:
            clear_earlier_run(training_args.output_dir)
        return None
    return finished_run_message(training_args.output_dir, training_args.resume_from_checkpoint, training_args.max_steps)


def loss_ends(losses: Sequence[float]) -> tuple[float, float]:
    """Mean loss over the first and over the last tenth of a run's logged steps (one step at least): a single step's
    loss swings too much to say whether a run learnt (a flat run can end on a high step)."""
    if not losses:
        raise ValueError("no training loss was logged")
    k = max(1, len(losses) // 10)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k
