"""The output folder of a training run: locked for the run's life, found writable before anything loads, and a full
disk reported as one.

- ``OutputDirLock``: ``<output_dir>/.mung_run.lock`` holds the holder's pid, host, process start, start time and
  command. It is created atomically (a hard link of a complete temporary file, which fails if the lock exists; or
  ``O_EXCL``), so of two runs started on one folder exactly one gets it and the other stops at once naming the
  holder. It is removed when the run ends, also by an exception or SIGTERM. A lock left by a killed run is stale
  when its process is gone from this host (or the pid now belongs to a process started later): it is taken over
  with a warning. A lock from another host cannot be checked: the message says to delete it if that run is gone.
- Several processes (torchrun, deepspeed): rank 0 takes the lock and tells the others (a broadcast), so the ranks of
  one run never refuse each other and all of them stop when another run holds the folder.
- ``check_writable``: a probe file is written, flushed and removed before any weights load.
- ``disk_full_reported``: an ``OSError``/``RuntimeError`` while saving, with ``ENOSPC``/``EDQUOT`` or less than
  ``FULL_BELOW`` bytes left on the folder's disk (torch reports a full disk as "unexpected pos"), becomes a
  ``DiskFull`` naming the folder; checkpoints saved before are left as they were.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional

import torch

logger = logging.getLogger(__name__)

LOCK_NAME = ".mung_run.lock"
FULL_BELOW = 64 * 1024 * 1024


class OutputDirBusy(RuntimeError):
    """Another run holds the output folder; the message names it."""


class DiskFull(OSError):
    """The disk of the output folder filled up while saving."""


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused pid apart; None elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    now = _process_start(pid)
    return started is None or now is None or now == started


class OutputDirLock:
    """The lock of one output folder (see the module docstring). ``acquire`` or ``OutputDirBusy``; ``release``."""

    def __init__(self, output_dir: str | os.PathLike):
        self.folder = Path(output_dir)
        self.path = self.folder / LOCK_NAME
        self.record = {
            "pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        }
        self.held = False

    def _create(self) -> bool:
        """Create the lock with our record; False when it exists."""
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # a filesystem without hard links
                return self._create_exclusive()
        finally:
            os.remove(tmp)

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.record, handle)
        return True

    def holder(self) -> Optional[dict]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(holder["pid"], holder.get("process_start"))

    def _busy(self, holder: dict) -> OutputDirBusy:
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}, "
               f"command: {holder.get('command', '?')}") if holder else "a run whose lock file cannot be read"
        return OutputDirBusy(
            f"--output_dir {self.folder} is in use by another training run ({who}). Wait for it to end or pass "
            f"another --output_dir; if that run is gone (killed on another machine), delete {self.path}."
        )

    def acquire(self) -> "OutputDirLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return self
            holder = self.holder()
            if holder is None:
                continue  # released meanwhile
            if not self._stale(holder):
                raise self._busy(holder)
            logger.warning("Taking over %s: the run that held it (pid %s, started %s) is gone.", self.path,
                           holder.get("pid"), holder.get("started"))
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise self._busy(self.holder() or {})

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.held = False


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
def locked_output_dir(training_args) -> Iterator[None]:
    """The output folder found writable and locked for the block: rank 0 holds the lock, and every rank stops with
    rank 0's error when it cannot have it."""
    lock, refusal = None, None
    if training_args.process_index == 0:
        try:
            check_writable(training_args.output_dir)
            lock = OutputDirLock(training_args.output_dir).acquire()
        except (OutputDirBusy, OSError) as err:
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


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
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
    except (OSError, RuntimeError) as err:
        if isinstance(err, DiskFull) or not _is_disk_full(err, Path(folder)):
            raise
        kept = f" {earlier} is intact: rerun the same command to resume from it." if earlier else ""
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise DiskFull(
            f"The disk holding {folder} is full: saving {what} failed ({reason}).{kept} Free some space first (or "
            "keep fewer checkpoints: --save_total_limit)."
        ) from None
