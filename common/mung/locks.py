"""One writer per output: the lock file a run holds on what it writes (a training run's ``--output_dir``, an
evaluation's ``--answers-file``) for its whole life.

The lock file holds the holder's pid, host, process start, start time and command (secrets hidden:
``redaction.command_line``), and the holder keeps an exclusive ``flock`` on it. Taking it is one atomic step: open (or
create) the file, ``flock`` it without waiting, and check the path still names the file locked (a holder that just
released unlinked it). So of any number of runs starting at once, on a free folder or on a stale lock, exactly one
holds it; the others stop at once naming the holder. A lock whose ``flock`` is free but whose record names a live
process of this host (a run of an older version, which did not ``flock``) or another host is respected as before: a
stale one (its process gone, or its pid now a later process) is taken over with a warning; another host's cannot be
checked and the message names the file to delete. Filesystems without ``flock`` fall back to creating the file with
``O_EXCL`` (atomic on a free folder; a stale takeover there is not).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from .redaction import command_line, redact_command_text

logger = logging.getLogger(__name__)


def process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused pid apart; None elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    now = process_start(pid)
    return started is None or now is None or now == started


def this_command() -> str:
    """The command line of this process as records show it (secrets hidden)."""
    return command_line([os.path.basename(sys.executable)] + sys.argv)


class OneWriterLock:
    """The lock file ``path`` of the output ``target`` named by ``flag``, written by one ``kind`` of run (``training
    run``, ``evaluation``); ``busy`` builds the error raised when another run holds it. ``acquire`` or ``busy``;
    ``release``."""

    def __init__(self, path: str | os.PathLike, flag: str, target: str | os.PathLike, kind: str,
                 busy: Callable[[str], Exception]):
        self.path = Path(path)
        self.flag, self.target, self.kind, self.busy = flag, target, kind, busy
        self.record = {
            "pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": this_command(),
        }
        self.held = False
        self._fd: Optional[int] = None

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
        return not alive(holder["pid"], holder.get("process_start"))

    def _busy(self, holder: Optional[dict]) -> Exception:
        if holder:
            command = redact_command_text(str(holder.get("command", "?")))  # records of older versions held secrets
            who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
                   f"{holder.get('started', '?')}, command: {command}")
        else:
            who = "a run whose lock file cannot be read"
        return self.busy(
            f"{self.flag} {self.target} is in use by another {self.kind} ({who}). Wait for it to end or pass another "
            f"{self.flag}; if that run is gone (killed on another machine), delete {self.path}."
        )

    def _write_record(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.record).encode("utf-8"), 0)
        os.fsync(fd)

    def _holder_soon(self) -> Optional[dict]:
        """The holder's record; a holder that has just locked the file may still be writing it, so an empty read is
        tried again for a moment."""
        for _ in range(50):
            holder = self.holder()
            if holder:
                return holder
            time.sleep(0.01)
        return self.holder()

    def _try_flock(self) -> Optional[bool]:
        """True: held; False: another run holds it; None: this filesystem has no ``flock``."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (unlinked) it between our open and flock: try the new file
            os.close(fd)
            return self._try_flock()
        holder = self.holder()
        if holder and holder.get("pid") != os.getpid() and not self._stale(holder):
            os.close(fd)  # a live run of a version that did not flock, or another host's run
            raise self._busy(holder)
        if holder:
            logger.warning("Taking over %s: the run that held it (pid %s, started %s) is gone.", self.path,
                           holder.get("pid"), holder.get("started"))
        self._write_record(fd)
        self._fd = fd
        return True

    def _try_exclusive(self, retry: bool = True) -> bool:
        """Without ``flock``: create the file with ``O_EXCL``; a stale or vanished lock is removed and tried once more."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self.holder()
            if retry and (holder is None or (holder and self._stale(holder))):
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                return self._try_exclusive(retry=False)
            return False
        self._write_record(fd)
        os.close(fd)
        return True

    def acquire(self) -> "OneWriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = self._try_flock()
        if held is None:
            held = self._try_exclusive()
        if not held:
            raise self._busy(self._holder_soon())
        self.held = True
        return self

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # while still locked: a run waiting on this file sees it gone and retries
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.held = False

    def __enter__(self) -> "OneWriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
