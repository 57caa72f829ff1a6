"""How every command-line entry point ends on a user's mistake: one line, ``error: …``, and exit status 2.

The messages the project raises for bad input already name the file, line or flag and what to do; a traceback
around them only hides that line. ``run_command`` prints the message alone for the errors a user can cause (a bad
value, a missing or unreadable file, a busy output folder, too many bad samples: ``ValueError`` and ``OSError``
and this project's own exceptions) and lets every other exception — a bug — show its traceback. ``MUNG_TRACEBACK=1``
shows the traceback of every error. Entry points are thin: ``if __name__ == "__main__": run_command(main)``; tests
call ``main`` itself and see the exception.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, TypeVar

from .help_text import name_the_command

T = TypeVar("T")

OWN_PACKAGES = frozenset({"mung", "noise_generator", "llava_noise", "qwen_noise", "vlm_noise", "tiny_world"})
USER_ERROR_STATUS = 2  # as argparse exits on a bad flag


# What launchers (torchrun, deepspeed, SLURM wrappers) set: whole numbers, read by torch, transformers and DeepSpeed.
LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "NNODES", "MASTER_PORT")


def check_launch_environment() -> None:
    """Each launcher variable that is set is a whole number ≥ 0 (``WORLD_SIZE`` ≥ 1); else one error naming it."""
    for name in LAUNCH_VARIABLES:
        value = os.environ.get(name)
        if value is None or (name == "LOCAL_RANK" and value.strip() == "-1"):  # transformers' "not distributed"
            continue
        least = 1 if name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "NNODES") else 0
        if not value.strip().isdigit() or int(value) < least:
            raise ValueError(
                f"the environment variable {name}={value!r} must be a whole number of at least {least} (launchers "
                f"such as torchrun set it); unset {name} or fix the launcher."
            )


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else default


def is_user_error(err: BaseException) -> bool:
    """Bad input rather than a bug: a bad value, a file problem, or one of the project's own named errors."""
    if isinstance(err, (ValueError, OSError)):
        return True
    return isinstance(err, Exception) and type(err).__module__.split(".")[0] in OWN_PACKAGES


def one_line(err: BaseException) -> str:
    """``error: message``; the project's own errors keep their name (``error: OutputDirBusy: …``), which says what
    kind of problem it is better than a built-in's. A process of a multi-process run says its rank first, as torch
    does (``[rank1]: error: …``)."""
    text = str(err).strip()
    name = type(err).__name__
    if type(err).__module__.split(".")[0] in OWN_PACKAGES:
        line = f"error: {name}: {text}" if text else f"error: {name}"
    else:
        line = f"error: {text or name}"
    if _env_int("WORLD_SIZE", 1) > 1 and "RANK" in os.environ:
        line = f"[rank{os.environ['RANK']}]: {line}"
    return line


def run_command(main: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``main(*args, **kwargs)`` (after ``check_launch_environment``); a user error ends the process with its message
    and status 2."""
    name_the_command()
    try:
        check_launch_environment()
        return main(*args, **kwargs)
    except Exception as err:
        if os.environ.get("MUNG_TRACEBACK") or not is_user_error(err):
            raise
        print(one_line(err), file=sys.stderr, flush=True)
        sys.exit(USER_ERROR_STATUS)
