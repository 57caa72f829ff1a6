"""``python -m llava_noise.eval.run_llava``: LLaVA's command name for the shared ``mung.eval.run_query``."""

from mung.eval.run_query import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
