"""``python -m llava_noise.serve.cli``: LLaVA's command name for the shared terminal chat ``mung.serve.cli``."""

from mung.serve.cli import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
