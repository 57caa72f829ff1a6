"""The README's "MuNG with PEFT / TRL" section runs as written: its Python block (the quickstart's Gemma 3 base
replaced by the tiny Gemma 3 family) and its shell commands (``$TW`` / ``$B`` expanded), each through its module's
own entry point in this process."""

import io
import shlex
import sys
from pathlib import Path

import pytest

from test_readme_vlm import linked_world
from vlm_helpers import family_folder

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## MuNG with PEFT / TRL"
QUICKSTART_BASE = '"outputs/quickstart/gemma3/base"'


def section_blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    pieces = section.split(f"```{language}\n")[1:]
    return [piece[:piece.index("```")] for piece in pieces]


def test_the_python_block_runs_as_written(vlm_families, tmp_path, monkeypatch, capsys):
    (block,) = section_blocks("python")
    assert QUICKSTART_BASE in block
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.replace(QUICKSTART_BASE, repr(family_folder(vlm_families, "gemma3"))), "README", "exec"),
         namespace)
    assert "trainable params" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "outputs" / "gemma3-peft").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert list(namespace["again"].peft_config) == ["default"]


@pytest.mark.slow
def test_the_trl_commands_run_as_written(tiny_world, vlm_families, tmp_path, monkeypatch):
    from mung import convert_adapter
    from mung.serve import cli
    from vlm_noise.train import trl_sft
    from mung.subcommands import COMMANDS

    (block,) = section_blocks("bash")
    tw = linked_world(tiny_world, tmp_path / "tw")
    base = family_folder(vlm_families, "gemma3")
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    commands = [shlex.split(line.replace("$TW", str(tw)).replace("$B", base)) for line in lines]
    # Each line's words before its flags name the command; mung.subcommands says which main runs it (checked here).
    entry_points = {("train", "--backbone", "trl"): trl_sft.main, ("chat",): cli.main,
                    ("convert", "adapter"): convert_adapter.main}
    assert [c[0] for c in commands] == ["mung"] * 3
    assert [tuple(c[1:1 + len(words)]) for c, words in zip(commands, entry_points)] == list(entry_points)
    assert [COMMANDS["train"].children["trl"].target, COMMANDS["chat"].target,
            COMMANDS["convert"].children["adapter"].target] == [
        "vlm_noise.train.trl_sft:main", "mung.serve.cli:main", "mung.convert_adapter:main"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\n\n"))
    trainer, chat, _ = [main(command[1 + len(words):])
                        for command, (words, main) in zip(commands, entry_points.items())]
    assert trainer.state.global_step == 5
    assert [role for role, _ in chat.turns] == ["user", "assistant"]
    assert (tmp_path / "outputs" / "gemma3-trl-generator" / "noise_generator.safetensors").is_file()
