"""``python -m llava_noise.eval.eval_science_qa``: LLaVA's command name for the shared ``mung.eval.eval_science_qa`` (any backbone)."""

from mung.commands import run_command
from mung.eval.eval_science_qa import main

if __name__ == "__main__":
    run_command(main)
