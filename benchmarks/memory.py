"""Peak memory of a piece of work: CUDA allocator statistics on a GPU; on CPU (Linux) the growth of the resident
high-water mark (VmHWM) of a fresh process, so nothing allocated or cached by earlier work hides the peak.

Fresh processes come from a fork server: it imports the modules named in ``run_in_fresh_process`` once and forks
one clean child per call, so each measurement costs a fork, not a Python start with torch imports.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import queue
from typing import Any, Callable

import torch

_LIBC = None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


class PeakMeter:
    """``start()`` marks the baseline, ``peak()`` is the most memory in use since then, in bytes above it."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.baseline = 0

    def start(self) -> int:
        """Reset the peak to the current use; returns the current use in bytes."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return self.baseline
        global _LIBC
        _LIBC = _LIBC or ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)  # return cached free memory, so growth shows up in the resident size
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS
        self.baseline = _status_kib("VmRSS") * 1024
        return self.baseline

    def peak(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        return _status_kib("VmHWM") * 1024 - self.baseline


def _child(function: Callable, args: tuple, results) -> None:
    results.put(function(*args))


def run_in_fresh_process(function: Callable, *args: Any, preload: tuple[str, ...] = ()) -> Any:
    """``function(*args)`` in a new process forked from a clean fork server; returns its (picklable) result.

    ``function`` must be importable by name (a module-level function). ``preload``: modules the fork server imports
    before its first fork (only the first call's list counts).
    """
    ctx = mp.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    results = ctx.Queue()
    process = ctx.Process(target=_child, args=(function, args, results))
    process.start()
    while True:
        try:
            result = results.get(timeout=1.0)
            break
        except queue.Empty:
            if not process.is_alive():
                try:  # it may have finished between the two checks
                    result = results.get(timeout=1.0)
                    break
                except queue.Empty:
                    pass
                raise RuntimeError(
                    f"{function.__name__}{args} failed in its fresh process (exit code {process.exitcode}); "
                    "its traceback is above."
                ) from None
    process.join()
    return result
