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
    assert sorted(p.name for p in (tmp_path / "out" / "gemma3-peft").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert list(namespace["again"].peft_config) == ["default"]


@pytest.mark.slow
def test_the_trl_commands_run_as_written(tiny_world, vlm_families, tmp_path, monkeypatch):
    from mung import convert_adapter
    from mung.serve import cli
    from vlm_noise.train import trl_sft

    (block,) = section_blocks("bash")
    tw = linked_world(tiny_world, tmp_path / "tw")
    base = family_folder(vlm_families, "gemma3")
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    commands = [shlex.split(line.replace("$TW", str(tw)).replace("$B", base)) for line in lines]
    entry_points = {"vlm_noise.train.trl_sft": trl_sft.main, "mung.serve.cli": cli.main,
                    "mung.convert_adapter": convert_adapter.main}
    assert [c[:2] for c in commands] == [["python", "-m"]] * 3 and [c[2] for c in commands] == list(entry_points)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\n\n"))
    trainer, chat, _ = [entry_points[command[2]](command[3:]) for command in commands]
    assert trainer.state.global_step == 5
    assert [role for role, _ in chat.turns] == ["user", "assistant"]
    assert (tmp_path / "out" / "gemma3-trl-generator" / "noise_generator.safetensors").is_file()
