"""The output folder of a training run: locked for the run's life, found writable before anything loads, and a full
disk reported as one.

- ``OutputDirLock``: ``<output_dir>/.mung_run.lock``, the one-writer lock of ``mung.locks`` (its record: pid, host,
  process start, start time and command with secrets hidden; held with ``flock``, so taking a free or stale lock is
  atomic and of runs started at once on one folder exactly one gets it, the others stopping at once naming the
  holder). It is removed when the run ends, also by an exception or SIGTERM. A lock left by a killed run is stale
  when its process is gone from this host (or the pid now belongs to a process started later): it is taken over
  with a warning. A lock from another host cannot be checked: the message says to delete it if that run is gone.
- Several processes (torchrun, deepspeed): rank 0 takes the lock and tells the others (a broadcast), so the ranks of
  one run never refuse each other and all of them stop when another run holds the folder.
- ``check_writable``: a probe file is written, flushed and removed before any weights load.
- ``disk_full_reported``: an error while saving with ``ENOSPC``/``EDQUOT``, a writer's text saying so (safetensors'
  ``SafetensorError`` while saving the generator: ``FULL_DISK_WORDS``), or an ``OSError``/``RuntimeError`` with less
  than ``FULL_BELOW`` bytes left on the folder's disk (torch reports a full disk as "unexpected pos"), becomes a
  ``DiskFull`` naming the folder; checkpoints saved before are left as they were.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..files import check_output_path
from ..locks import OneWriterLock

logger = logging.getLogger(__name__)

LOCK_NAME = ".mung_run.lock"
FULL_BELOW = 64 * 1024 * 1024


class OutputDirBusy(RuntimeError):
    """Another run holds the output folder; the message names it."""


class DiskFull(OSError):
    """The disk of the output folder filled up while saving."""


class OutputDirLock(OneWriterLock):
    """The lock of one output folder (``locks.OneWriterLock``). ``acquire`` or ``OutputDirBusy``; ``release``."""

    def __init__(self, output_dir: str | os.PathLike):
        self.folder = Path(output_dir)
        super().__init__(self.folder / LOCK_NAME, "--output_dir", self.folder, "training run", OutputDirBusy)


def _share_from_rank0(value):
    """Rank 0's ``value`` on every rank (unchanged in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a scheduler or launcher stopping the run) unwinds like an exception, so the lock is released."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def locked_output_dir(training_args, inputs: Optional[dict] = None) -> Iterator[None]:
    """The output folder, clear of the run's ``inputs`` (flag → path: ``files.check_output_path``), found writable and
    locked for the block: rank 0 holds the lock, and every rank stops with rank 0's error when it cannot have it."""
    lock, refusal = None, None
    if training_args.process_index == 0:
        try:
            check_output_path(training_args.output_dir, "--output_dir", inputs or {}, kind="folder")
            check_writable(training_args.output_dir)
            lock = OutputDirLock(training_args.output_dir).acquire()
        except (OutputDirBusy, OSError, ValueError) as err:
            refusal = err
    refusal = _share_from_rank0(refusal)
    if refusal is not None:
        raise refusal
    try:
        with _sigterm_as_exit():
            yield
    finally:
        if lock is not None:
            lock.release()


def check_writable(output_dir: str | os.PathLike) -> None:
    """Create ``output_dir`` and write, flush and remove a probe file there: a folder that cannot take the run's
    checkpoints fails now, before any weights load, not at the first save."""
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"--output_dir {folder}: its disk is full; free some space before training.") from None
        raise PermissionError(
            f"--output_dir {folder} is not a folder this run can write to ({err.strerror or err}); pass another "
            "--output_dir or fix its permissions."
        ) from None


# How writers that do not raise OSError say the disk is full: safetensors (a Rust io::Error in a SafetensorError's
# text), torch's zip writer (a RuntimeError's text), and the C library's own words.
FULL_DISK_WORDS = ("No space left on device", "Disk quota exceeded", "StorageFull", "QuotaExceeded", "os error 28",
                   "code: 28", "os error 122")


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(words in str(err) for words in FULL_DISK_WORDS):
        return True
    if not isinstance(err, (OSError, RuntimeError)):
        return False  # a writer's other error (a bug, a bad tensor): not the disk
    try:
        return shutil.disk_usage(folder if folder.exists() else folder.parent).free < FULL_BELOW
    except OSError:
        return False


@contextlib.contextmanager
def disk_full_reported(folder: str | os.PathLike, what: str, earlier: Optional[str] = None) -> Iterator[None]:
    """Inside the block (a save of ``what`` into ``folder``), a full disk is a ``DiskFull`` naming the folder and
    the ``earlier`` checkpoint to resume from; other errors pass unchanged."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - safetensors' SafetensorError is neither OSError nor RuntimeError
        if isinstance(err, DiskFull) or not _is_disk_full(err, Path(folder)):
            raise
        kept = f" {earlier} is intact: rerun the same command to resume from it." if earlier else ""
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise DiskFull(
            f"The disk holding {folder} is full: saving {what} failed ({reason}).{kept} Free some space first (or "
            "keep fewer checkpoints: --save_total_limit)."
        ) from None
