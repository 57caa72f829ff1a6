"""Issue 19 §5: a launcher variable that is not a whole number (``WORLD_SIZE=abc``) ends a command with one line naming
the variable, before anything loads (it used to go unnoticed until torch read it, and the error printer itself then
failed on it with a traceback)."""

import subprocess
import sys

import pytest

from distributed_utils import REPO, child_env
from mung.commands import check_launch_environment


@pytest.mark.parametrize("name, value", [("WORLD_SIZE", "abc"), ("LOCAL_RANK", "-1x"), ("WORLD_SIZE", "0")])
def test_a_bad_launcher_variable_is_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"^the environment variable {name}='{value}' must be a whole number of at "
                                         rf"least [01] .*unset {name} or fix the launcher\.$"):
        check_launch_environment()


def test_good_launcher_variables_pass(monkeypatch):
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "0"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    check_launch_environment()


def test_world_size_abc_stops_a_command_with_one_line(tmp_path):
    env = {**child_env(), "WORLD_SIZE": "abc", "RANK": "0"}
    result = subprocess.run([sys.executable, "-m", "mung.eval.model_vqa_loader", "--model-path", str(tmp_path / "m"),
                             "--question-file", str(tmp_path / "q.jsonl"), "--answers-file", str(tmp_path / "a.jsonl")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the environment variable WORLD_SIZE='abc' must be a whole number of at least 1 (launchers such as "
        "torchrun set it); unset WORLD_SIZE or fix the launcher.")
    assert "Traceback" not in result.stderr
