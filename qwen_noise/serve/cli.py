"""``python -m qwen_noise.serve.cli``: the shared terminal chat ``mung.serve.cli`` (any backbone)."""

from mung.commands import run_command
from mung.serve.cli import main

if __name__ == "__main__":
    run_command(main)
