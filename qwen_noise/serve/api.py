"""``python -m qwen_noise.serve.api``: the shared OpenAI-compatible API ``mung.serve.api`` (any backbone)."""

from mung.serve.api import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
