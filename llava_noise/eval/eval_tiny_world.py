"""``python -m llava_noise.eval.eval_tiny_world``: LLaVA's command name for the shared ``mung.eval.eval_tiny_world`` (any backbone)."""

from mung.eval.eval_tiny_world import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
