"""``python -m llava_noise.eval.eval_pope``: LLaVA's command name for the shared ``mung.eval.eval_pope`` (any backbone)."""

from mung.commands import run_command
from mung.eval.eval_pope import main

if __name__ == "__main__":
    run_command(main)
