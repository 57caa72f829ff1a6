"""``python -m llava_noise.eval.convert_gqa_for_eval``: LLaVA's command name for the shared ``mung.eval.convert_gqa_for_eval`` (any backbone)."""

from mung.commands import run_command
from mung.eval.convert_gqa_for_eval import main

if __name__ == "__main__":
    run_command(main)
