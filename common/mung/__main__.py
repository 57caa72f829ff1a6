"""``python -m mung``: the ``mung`` command (``mung.front``)."""

from .commands import run_command
from .front import main

if __name__ == "__main__":
    run_command(main)
