"""``python -m llava_noise.serve.cli``: LLaVA's command name for the shared terminal chat ``mung.serve.cli``."""

from mung.commands import run_command
from mung.serve.cli import main

if __name__ == "__main__":
    run_command(main)
