"""Checks on the paths users pass, made before anything slow (loading a model, asking the hub) happens."""

from __future__ import annotations

import os
from typing import Optional

from .safe_pickles import check_weight_pickles


def looks_like_local_path(name: str) -> bool:
    """True for absolute/relative filesystem paths; False for hub ids such as ``org/model``."""
    name = str(name)
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def check_model_path(name: Optional[str], flag: str) -> None:
    """Fail fast (before transformers tries the hub) when ``flag`` names a local folder that does not exist, or one
    whose pickle-format weight files hold more than tensors (``safe_pickles.check_weight_pickles``)."""
    if not name:
        raise ValueError(f"{flag} is required.")
    folder = os.path.expanduser(str(name))
    if looks_like_local_path(name) and not os.path.exists(folder):
        raise FileNotFoundError(f"{flag} {name} does not exist; pass the folder of a downloaded checkpoint.")
    if os.path.isdir(folder):
        check_weight_pickles(folder)
