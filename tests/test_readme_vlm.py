"""The README's "Bring your own VLM" commands run exactly as written (``$TW`` set, from a fresh folder): build the
world and the families, train on the tiny Gemma 3, answer the eval questions, chat twice. Each command runs in this
process through its module's own entry point with the README's arguments."""

import io
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def byo_commands(tw: str) -> list[list[str]]:
    """The shell commands of the section's bash block, continuations joined and ``$TW`` expanded to ``tw`` (the
    block's own first line sets it, so it runs in a fresh shell)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Bring your own VLM"):]
    block = section[section.index("```bash") + len("```bash"):]
    lines = [line for line in block[:block.index("```")].replace("\\\n", " ").splitlines() if line.strip()]
    assert lines[0].startswith("TW=") and " " not in lines[0], lines[0]
    return [shlex.split(line.replace("$TW", tw)) for line in lines[1:]]


def linked_world(tiny_world, vlm_families, root: Path) -> Path:
    """The session world (symlinks) with its family checkpoints as ``families``: the README's first command finds
    everything built and rebuilds nothing."""
    world = Path(tiny_world["image_folder"]).parent
    root.mkdir()
    for entry in world.iterdir():
        if entry.name != "families":
            (root / entry.name).symlink_to(entry)
    (root / "families").symlink_to(Path(vlm_families["gemma3"]).parent)
    return root


@pytest.mark.slow
def test_the_readme_train_eval_and_chat_commands_run_as_written(tiny_world, vlm_families, tmp_path, monkeypatch,
                                                                 capsys):
    import tiny_world.__main__ as tiny_world_main
    from mung.eval import model_vqa_loader
    from mung.serve import cli
    from vlm_noise.train.train import train

    tw = linked_world(tiny_world, vlm_families, tmp_path / "tw")
    monkeypatch.chdir(tmp_path)
    commands = byo_commands(str(tw))
    entry_points = {"tiny_world": tiny_world_main.main, "vlm_noise.train.train": train,
                    "mung.eval.model_vqa_loader": model_vqa_loader.main, "mung.serve.cli": cli.main}
    assert [c[:2] for c in commands] == [["python", "-m"]] * 4
    assert [c[2] for c in commands] == list(entry_points)
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\nAnd its colour?\n\n"))
    results = [entry_points[command[2]](command[3:]) for command in commands]
    assert results[1].state.global_step == 30
    answers = [json.loads(line) for line in open(tmp_path / "out" / "gemma3-answers.jsonl")]
    assert len(answers) == len(open(tiny_world["eval_questions"]).readlines())
    assert [role for role, _ in results[3].turns] == ["user", "assistant", "user", "assistant"]
    assert capsys.readouterr().out.rstrip().endswith("exit...")
    assert os.path.isfile(tmp_path / "out" / "gemma3-mung" / "noise_generator.safetensors")
