"""``python -m qwen_noise.eval.model_vqa_loader``: the shared ``mung.eval.model_vqa_loader`` (any backbone;
``--min-pixels`` / ``--max-pixels`` bound Qwen2.5-VL's image resizing)."""

from mung.commands import run_command
from mung.eval.model_vqa_loader import main

if __name__ == "__main__":
    run_command(main)
