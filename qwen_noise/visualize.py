"""``python -m qwen_noise.visualize``: the shared noise-map command ``mung.visualize`` (any backbone)."""

from mung.commands import run_command
from mung.visualize import main

if __name__ == "__main__":
    run_command(main)
