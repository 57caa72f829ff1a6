"""``python -m llava_noise.eval.summarize_llavabench``: LLaVA's command name for the shared ``mung.eval.summarize_llavabench`` (any backbone)."""

from mung.eval.summarize_llavabench import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
