"""``python -m llava_noise.eval.eval_science_qa``: LLaVA's command name for the shared ``mung.eval.eval_science_qa`` (any backbone)."""

from mung.eval.eval_science_qa import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
