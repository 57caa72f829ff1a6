"""Run one of the MuNG servers as a real subprocess on a free loopback port, for the serving benchmark and tests.

``running_server`` starts ``python -m <module> ... --host 127.0.0.1 --port <free port>``, waits (bounded) until it
answers HTTP, yields its base URL, and always ends the process group it started, however the block exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    """True once the server answers HTTP at all (a 401 from a keyed API counts: it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """End the server's process group: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextmanager
def running_server(module: str, args: list[str], log_path: str | os.PathLike, ready_path: str = "/",
                   timeout: float = 300.0, cwd: Optional[str] = None) -> Iterator[str]:
    """Yield ``http://127.0.0.1:<port>`` of ``python -m module *args`` once it answers ``ready_path``."""
    port = free_port()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", module, *args, "--host", LOOPBACK, "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK}
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, env=env, start_new_session=True)
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(base_url + ready_path):
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode} before serving:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} did not answer within {timeout:.0f} s:\n{_log_tail(log_path)}")
            time.sleep(0.5)
        yield base_url
    finally:
        _stop(process)
