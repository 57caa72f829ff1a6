"""``python -m llava_noise.eval.convert_vqav2_for_submission``: LLaVA's command name for the shared ``mung.eval.convert_vqav2_for_submission`` (any backbone)."""

from mung.commands import run_command
from mung.eval.convert_vqav2_for_submission import main

if __name__ == "__main__":
    run_command(main)
