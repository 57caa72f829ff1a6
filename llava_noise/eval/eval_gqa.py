"""``python -m llava_noise.eval.eval_gqa``: LLaVA's command name for the shared ``mung.eval.eval_gqa`` (any backbone)."""

from mung.commands import run_command
from mung.eval.eval_gqa import main

if __name__ == "__main__":
    run_command(main)
