"""``python -m llava_noise.eval.summarize_llavabench``: LLaVA's command name for the shared ``mung.eval.summarize_llavabench`` (any backbone)."""

from mung.commands import run_command
from mung.eval.summarize_llavabench import main

if __name__ == "__main__":
    run_command(main)
