"""The README's "Bring your own VLM" commands run exactly as written: after the quickstart line (run by
``test_quickstart_families.py``, here replaced by what it leaves: the world and a Gemma 3 checkpoint as ``$B``), train
the generator on the tiny Gemma 3, answer the shifted eval questions, score them, chat twice. Each ``mung`` command
runs in this process through the ``mung`` front (``mung.front.main``) with the README's arguments: the backbone of
``mung train`` comes from the Gemma 3 folder's config.json."""

import io
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
QUICKSTART = "bash scripts/quickstart.sh --backbone gemma3"
FOLDERS = "TW=outputs/quickstart/tiny_world B=outputs/quickstart/gemma3/base"


def byo_commands(tw: str, base: str) -> list[list[str]]:
    """The shell commands of the section's bash block after its quickstart and folder lines, continuations joined,
    ``$TW`` and ``$B`` expanded to ``tw`` and ``base``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Bring your own VLM"):]
    block = section[section.index("```bash") + len("```bash"):]
    lines = [line for line in block[:block.index("```")].replace("\\\n", " ").splitlines() if line.strip()]
    assert lines[:2] == [QUICKSTART, FOLDERS]
    return [shlex.split(line.replace("$TW", tw).replace("$B", base)) for line in lines[2:]]


def linked_world(tiny_world, root: Path) -> Path:
    """The session world (symlinks), as the quickstart leaves it."""
    world = Path(tiny_world["image_folder"]).parent
    root.mkdir()
    for entry in world.iterdir():
        (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.slow
def test_the_readme_train_eval_and_chat_commands_run_as_written(tiny_world, vlm_families, tmp_path, monkeypatch,
                                                                 capsys):
    from mung import front

    tw = linked_world(tiny_world, tmp_path / "tw")
    monkeypatch.chdir(tmp_path)
    commands = byo_commands(str(tw), vlm_families["gemma3"])
    assert [c[:2] for c in commands] == [["mung", "train"], ["mung", "eval"], ["mung", "score"], ["mung", "chat"]]
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\nAnd its colour?\n\n"))
    results = [front.main(command[1:]) for command in commands]
    assert type(results[0]).__module__.startswith("vlm_noise")  # the trainer of the backbone the folder needs
    assert results[0].state.global_step == 30
    answers = [json.loads(line) for line in open(tmp_path / "outputs" / "gemma3-answers.jsonl")]
    assert len(answers) == len(open(tw / "eval" / "shift_eval_questions.jsonl").readlines())
    out = capsys.readouterr().out
    assert f"{len(answers)} answers written to outputs/gemma3-answers.jsonl in " in out  # the eval says it finished
    assert "overall: " in out.split("USER")[0] and out.rstrip().endswith("exit...")  # the score, then the chat
    assert [role for role, _ in results[3].turns] == ["user", "assistant", "user", "assistant"]
    assert os.path.isfile(tmp_path / "outputs" / "gemma3-mung" / "noise_generator.safetensors")
