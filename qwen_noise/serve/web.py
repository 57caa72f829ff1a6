"""``python -m qwen_noise.serve.web``: the shared web demo ``mung.serve.web`` (any backbone)."""

from mung.commands import run_command
from mung.serve.web import main

if __name__ == "__main__":
    run_command(main)
