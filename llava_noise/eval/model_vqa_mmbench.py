"""``python -m llava_noise.eval.model_vqa_mmbench``: LLaVA's command name for the shared ``mung.eval.model_vqa_mmbench`` (any backbone)."""

from mung.commands import run_command
from mung.eval.model_vqa_mmbench import main

if __name__ == "__main__":
    run_command(main)
