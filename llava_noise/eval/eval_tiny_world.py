"""``python -m llava_noise.eval.eval_tiny_world``: LLaVA's command name for the shared ``mung.eval.eval_tiny_world`` (any backbone)."""

from mung.commands import run_command
from mung.eval.eval_tiny_world import main

if __name__ == "__main__":
    run_command(main)
