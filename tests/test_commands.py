"""Every command ends a user's mistake with one line, ``error: …``, and exit status 2 (no traceback around the
message); bugs keep their traceback, and ``MUNG_TRACEBACK=1`` shows it for every error."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mung.commands import run_command
from mung.training.output_dir import OutputDirBusy

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common/mung", "llava_noise", "qwen_noise", "vlm_noise")
OWN_ERROR_HANDLING = {"common/mung/compare/__main__.py"}  # prints "[compare] …" and returns 2 itself


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each command below run once, all started at once: (exit status, stderr) by name."""
    root = tmp_path_factory.mktemp("commands")
    (root / "q.jsonl").write_text('{"question_id": 1, "text": "Hi"}\n')
    nowhere = str(root / "nowhere")
    commands = {
        "chat": (["mung.serve.cli", "--model-path", nowhere], {}),
        "eval": (["llava_noise.eval.model_vqa_loader", "--model-path", nowhere, "--question-file",
                  str(root / "q.jsonl")], {}),
        "train": (["vlm_noise.train.train", "--model_name_or_path", nowhere, "--data_path", "x", "--output_dir",
                   str(root / "out"), "--report_to", "none"], {}),
        "traceback": (["mung.serve.cli", "--model-path", nowhere], {"MUNG_TRACEBACK": "1"}),
    }
    running = {name: subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
               for name, (argv, env) in commands.items()}
    errors = {name: process.communicate(timeout=240)[1] for name, process in running.items()}
    return {name: (running[name].returncode, errors[name]) for name in commands}, nowhere


@pytest.mark.parametrize("name", ["chat", "eval"])
def test_a_missing_checkpoint_is_one_line_and_status_2(results, name):
    (returncode, stderr), nowhere = results[0][name], results[1]
    assert returncode == 2
    assert stderr.strip().splitlines() == [
        f"error: --model-path {nowhere} does not exist (only local checkpoints are supported; download the model "
        "first)."]


def test_the_traceback_is_there_when_asked_for(results):
    returncode, stderr = results[0]["traceback"]
    assert returncode == 1
    assert "Traceback (most recent call last)" in stderr and "FileNotFoundError: --model-path" in stderr


def test_a_bad_training_flag_is_one_line(results):
    (returncode, stderr), nowhere = results[0]["train"], results[1]
    assert returncode == 2
    assert stderr.strip().splitlines() == [
        f"error: --model_name_or_path {nowhere} does not exist; pass the folder of a downloaded checkpoint."]


def test_own_errors_keep_their_name_and_bugs_their_traceback(capsys):
    def busy():
        raise OutputDirBusy("--output_dir out is in use by another training run")

    with pytest.raises(SystemExit) as stopped:
        run_command(busy)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: OutputDirBusy: --output_dir out is in use by another training run\n"

    def bad_value(value):
        raise ValueError(f"--ng_heads {value} must divide the width")

    with pytest.raises(SystemExit):
        run_command(bad_value, 3)
    assert capsys.readouterr().err == "error: --ng_heads 3 must divide the width\n"

    def bug():
        raise KeyError("index")

    with pytest.raises(KeyError):
        run_command(bug)
    assert run_command(lambda a, b=0: a + b, 1, b=2) == 3


def test_a_rank_of_a_multi_process_run_says_which_it_is(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit):
        run_command(int, "x")
    assert capsys.readouterr().err == "[rank1]: error: invalid literal for int() with base 10: 'x'\n"


def main_blocks():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                    yield str(path.relative_to(REPO)), node


def test_every_entry_point_runs_through_run_command():
    """The class, not the examples: a new ``python -m`` entry point that forgets it fails here."""
    blocks = list(main_blocks())
    assert len(blocks) > 50
    missing = [name for name, node in blocks
               if name not in OWN_ERROR_HANDLING and "run_command(" not in ast.unparse(node)]
    assert missing == []
