"""``python -m llava_noise.serve.web``: the shared web demo ``mung.serve.web`` (any backbone)."""

from mung.serve.web import main
from mung.commands import run_command

if __name__ == "__main__":
    run_command(main)
