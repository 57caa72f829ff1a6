"""Checks on the paths users pass, made before anything slow (loading a model, asking the hub) happens."""

from __future__ import annotations

import errno
import os
from typing import Optional


def looks_like_local_path(name: str) -> bool:
    """True for absolute/relative filesystem paths; False for hub ids such as ``org/model``."""
    name = str(name)
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def missing_reason(path: str | os.PathLike, want: str = "file") -> str:
    """Why ``path`` cannot be used as a ``want`` ("file" or "folder"), worded to follow the path in a message
    ("does not exist", "is a symbolic link loop ..."), or "" when it can."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop (following it leads back to itself); fix or remove the link"
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if err.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({err.strerror or err})"
    if want == "file" and os.path.isdir(path):
        return "is a folder, not a file"
    if want == "folder" and not os.path.isdir(path):
        return "is a file, not a folder"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def check_model_path(name: Optional[str], flag: str) -> None:
    """Fail fast (before transformers tries the hub) when ``flag`` names a local folder that does not exist, or one
    whose pickle-format weight files hold more than tensors (``safe_pickles.check_weight_pickles``)."""
    if not name:
        raise ValueError(f"{flag} is required.")
    folder = os.path.expanduser(str(name))
    reason = missing_reason(folder, "folder") if looks_like_local_path(name) else ""
    if reason:
        raise FileNotFoundError(f"{flag} {name} {reason}; pass the folder of a downloaded checkpoint.")
    if os.path.isdir(folder):
        from .safe_pickles import check_weight_pickles  # imports torch: not for the many light users of this file

        check_weight_pickles(folder)
