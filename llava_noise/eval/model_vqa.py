"""``python -m llava_noise.eval.model_vqa``: LLaVA's command name for the shared ``mung.eval.model_vqa`` (any backbone)."""

from mung.commands import run_command
from mung.eval.model_vqa import main

if __name__ == "__main__":
    run_command(main)
