"""The recipe launchers as a new user runs them: without an activated environment they use the repository's .venv
(before: the system python, "No module named 'huggingface_hub'"), an activated one wins, and on CPU they pick a
thread count from the cores and the DataLoader workers unless OMP_NUM_THREADS is set.

Each case runs a recipe in a copy of scripts/ inside a scratch "repository" whose .venv/bin/python is a stub that
records the command and its thread settings."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"llava": "scripts/v1_5/finetune_noise_lora.sh", "qwen": "scripts/qwen/finetune_noise.sh",
           "vlm": "scripts/vlm/finetune_noise.sh"}
MODULES = {"llava": "llava_noise.train.train", "qwen": "qwen_noise.train.train", "vlm": "vlm_noise.train.train"}


def usable_cores() -> int:
    """Reference: the CPUs this process may run on, capped by a cgroup v2 quota."""
    cores = len(os.sched_getaffinity(0))
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    if cpu_max.is_file():
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    return cores


@pytest.fixture
def scratch_repo(tmp_path):
    """(root, record file, PATH holding only a plain, non-venv python and the system tools)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    record = tmp_path / "record.txt"
    stub = root / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(f'#!/bin/sh\necho "$OMP_NUM_THREADS $MKL_NUM_THREADS $*" >> {record}\n')
    stub.chmod(0o755)
    plain = tmp_path / "plain_bin"
    plain.mkdir()
    (plain / "python").symlink_to(os.path.realpath(sys.executable))  # the interpreter itself, outside any venv
    return root, record, f"{plain}:/usr/bin:/bin"


def run_recipe(root, backbone, path, **env):
    base = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": path, "HAS_GPU": "0", "OUTPUT_DIR": str(root / "out"),
            "MODEL_PATH": "m", "DATA_PATH": "d", "IMAGE_FOLDER": "i"}
    return subprocess.run(["bash", str(root / RECIPES[backbone])], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("backbone", ["llava", "qwen", "vlm"])
def test_without_an_active_venv_the_repository_venv_runs_with_threads_per_core(backbone, scratch_repo):
    root, record, path = scratch_repo
    result = run_recipe(root, backbone, path, NUM_WORKERS="1")
    assert result.returncode == 0, result.stderr
    threads, mkl, *command = record.read_text().split()
    assert command[:2] == ["-m", MODULES[backbone]]
    expected = max(1, usable_cores() // 2)  # one process + one DataLoader worker
    assert (int(threads), int(mkl)) == (expected, expected)


@pytest.mark.parametrize("backbone", ["llava", "qwen", "vlm"])
def test_a_chosen_thread_count_is_kept(backbone, scratch_repo):
    root, record, path = scratch_repo
    result = run_recipe(root, backbone, path, OMP_NUM_THREADS="3", MKL_NUM_THREADS="5")
    assert result.returncode == 0, result.stderr
    assert record.read_text().split()[:2] == ["3", "5"]


def test_an_activated_venv_wins_over_the_repository_one(scratch_repo, tmp_path):
    root, record, path = scratch_repo
    active = tmp_path / "active"
    subprocess.run([str(Path(path.split(":")[0]) / "python"), "-m", "venv", "--without-pip", str(active)], check=True)
    result = run_recipe(root, "qwen", f"{active}/bin:{path}", VIRTUAL_ENV=str(active))
    assert not record.exists()  # the stub in .venv never ran
    assert result.returncode != 0 and result.stderr.startswith(f"{active}/bin/python: ")  # this bare venv ran it
    assert "No module named 'qwen_noise'" in result.stderr


def test_the_generic_recipe_asks_for_the_model_to_tune(scratch_repo):
    root, record, path = scratch_repo
    result = run_recipe(root, "vlm", path, MODEL_PATH="")
    assert result.returncode != 0 and not record.exists()
    assert "set MODEL_PATH to the folder of the VLM to tune" in result.stderr
