"""Every ``mung`` command in the README's bash blocks is one the front knows, and its flags are ones that command
takes: each line runs through ``mung.front.main`` up to the moment its own parser has read the arguments (the
parse must succeed), and stops there. The blocks' full runs are other tests (``test_readme_vlm.py``; the
quickstart's); this one covers every line, cheaply."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from mung import front

README = Path(__file__).resolve().parents[1] / "README.md"


class Parsed(Exception):
    pass


def bash_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


MUNG_LINES = [line for line in bash_lines() if line.startswith("mung ")]


def test_the_readme_examples_use_mung():
    assert len(MUNG_LINES) >= 12
    assert [line for line in bash_lines() if "python -m" in line] == [
        "bash scripts/install.sh && .venv/bin/python -m pytest -q"]  # the test command


@pytest.mark.parametrize("line", MUNG_LINES)
def test_each_readme_mung_line_parses(line, tiny_world, vlm_families, monkeypatch):
    world = str(Path(tiny_world["image_folder"]).parent)
    values = {"TW": world, "B": vlm_families["gemma3"], "BASE": "outputs/quickstart/llava/base",
              "Q": "outputs/quickstart/llava"}
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: values[m.group(1)], line.split("  #")[0]))
    original = argparse.ArgumentParser.parse_known_args

    def parse_then_stop(parser, args=None, namespace=None):
        original(parser, args, namespace)  # a flag the command does not take exits here with status 2
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_then_stop)
    with pytest.raises(Parsed):
        front.main(words[1:])
