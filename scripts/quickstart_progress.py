"""Run one quickstart stage with its whole output in its log file and its progress on screen.

A stage can take minutes (stage 1 trains ~155 s on 2 cores); its output goes to the log so the screen stays
readable, and every ``EVERY`` seconds one line says how far it is: the step of the progress bar the command draws
(tqdm's ``12/60``, the Trainer's and the answering loop's) and the last training loss the Trainer logged.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

EVERY = 10.0  # seconds between two progress lines
BAR = re.compile(r"(\d+)/(\d+) \[")  # tqdm: " 12/60 [00:10<00:40, ...]"
LOSS = re.compile(r"'loss': '?([-+0-9.eE]+|nan|inf)")  # the Trainer's log line: {'loss': '1.234', ...}


class Progress:
    """The latest step and loss seen in a stage's output."""

    def __init__(self) -> None:
        self.step: Optional[str] = None
        self.loss: Optional[str] = None
        self.lock = threading.Lock()

    def read(self, text: str) -> None:
        bars, losses = BAR.findall(text), LOSS.findall(text)
        with self.lock:
            if bars:
                self.step = "/".join(bars[-1])
            if losses:
                self.loss = losses[-1]

    def line(self, name: str, seconds: float) -> str:
        with self.lock:
            parts = [f"step {self.step}" if self.step else "", f"loss {self.loss}" if self.loss else ""]
        detail = ", ".join(part for part in parts if part)
        stage = name.split(":")[0]  # "stage 1: base (...)" -> "stage 1"
        return f"[quickstart] {stage}: {seconds:.0f} s" + (f", {detail}" if detail else ", working")


def copy_output(stream, log, progress: Progress) -> None:
    """Everything the stage prints into its log; its progress bars and losses into ``progress``."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        log.write(chunk)
        log.flush()
        progress.read(chunk.decode("utf-8", errors="replace"))


def run_logged(name: str, cmd: list[str], cwd: Path, env: dict, log: Path, stdin: Optional[str] = None) -> int:
    """Run ``cmd`` with stdout+stderr to ``log``, a progress line on screen every ``EVERY`` s; its exit status."""
    progress = Progress()
    start = time.perf_counter()
    with open(log, "wb") as handle:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE if stdin is not None else None)
        if stdin is not None:
            proc.stdin.write(stdin.encode("utf-8"))
            proc.stdin.close()
        reader = threading.Thread(target=copy_output, args=(proc.stdout, handle, progress), daemon=True)
        reader.start()
        while True:
            try:
                proc.wait(timeout=EVERY)
                break
            except subprocess.TimeoutExpired:
                print(progress.line(name, time.perf_counter() - start), flush=True)
        reader.join()
    return proc.returncode
