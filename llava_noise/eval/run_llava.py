"""``python -m llava_noise.eval.run_llava``: LLaVA's command name for the shared ``mung.eval.run_query``."""

from mung.commands import run_command
from mung.eval.run_query import main

if __name__ == "__main__":
    run_command(main)
