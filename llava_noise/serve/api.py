"""``python -m llava_noise.serve.api``: the shared OpenAI-compatible API ``mung.serve.api`` (any backbone)."""

from mung.commands import run_command
from mung.serve.api import main

if __name__ == "__main__":
    run_command(main)
