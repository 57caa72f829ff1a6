"""Checks on the paths users pass, made before anything slow (loading a model, asking the hub) happens."""

from __future__ import annotations

import os
from typing import Optional


def looks_like_local_path(name: str) -> bool:
    """True for absolute/relative filesystem paths; False for hub ids such as ``org/model``."""
    name = str(name)
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def check_model_path(name: Optional[str], flag: str) -> None:
    """Fail fast (before transformers tries the hub) when ``flag`` names a local folder that does not exist."""
    if not name:
        raise ValueError(f"{flag} is required.")
    if looks_like_local_path(name) and not os.path.exists(os.path.expanduser(str(name))):
        raise FileNotFoundError(f"{flag} {name} does not exist; pass the folder of a downloaded checkpoint.")
