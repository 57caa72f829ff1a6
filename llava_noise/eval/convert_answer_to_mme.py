"""``python -m llava_noise.eval.convert_answer_to_mme``: LLaVA's command name for the shared ``mung.eval.convert_answer_to_mme`` (any backbone)."""

from mung.commands import run_command
from mung.eval.convert_answer_to_mme import main

if __name__ == "__main__":
    run_command(main)
