"""Kill a training run with SIGKILL after its first checkpoint, resume it (``--resume_from_checkpoint`` and the
automatic resume from the newest complete ``checkpoint-N`` in ``--output_dir``), and compare the final generator with
an uninterrupted run of the same seed: same optimizer, scheduler, data order and noise draws give the same weights.

The suite runs Qwen (MuNG, generator only; uninterrupted and resumed runs in this process, the killed one as a
child). ``MUNG_RESUME_BACKBONES=qwen,llava`` adds LLaVA MuNG + LoRA (every run a child process).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_utils import REPO, child_env, kill_group, rank_log_command, rank_logs, tail
from mung.training.rank_log import RankLogCallback
from noise_generator import WEIGHTS_NAME

STEPS = 9
SAVE_STEPS = 3
BACKBONES = os.environ.get("MUNG_RESUME_BACKBONES", "qwen").split(",")


@pytest.fixture(scope="module")
def recipe(request, tiny_world, tmp_path_factory):
    """(backbone, argv without --output_dir)."""
    backbone = request.param
    root = tmp_path_factory.mktemp(f"resume_{backbone}")
    common = [
        "--per_device_train_batch_size", "2", "--max_steps", str(STEPS), "--save_steps", str(SAVE_STEPS),
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "True", "--disable_tqdm", "True",
        "--dataloader_num_workers", "0", "--seed", "0", "--warmup_steps", "2", "--lr_scheduler_type", "cosine",
        "--model_max_length", "256", "--ng_heads", "4", "--save_total_limit", "5",
    ]
    if backbone == "qwen":
        (root / "data.json").write_text(json.dumps(json.loads(Path(tiny_world["qwen_train_json"]).read_text())[:40]))
        return backbone, common + [
            "--model_name_or_path", tiny_world["qwen_model"], "--data_path", str(root / "data.json"),
            "--image_folder", tiny_world["image_folder"], "--tune", "noise", "--learning_rate", "1e-2",
        ]
    (root / "data.json").write_text(json.dumps(json.loads(Path(tiny_world["llava_train_json"]).read_text())[:40]))
    return backbone, common + [
        "--model_name_or_path", tiny_world["llava_llm"], "--vision_tower", tiny_world["llava_vision_tower"],
        "--version", "v1", "--data_path", str(root / "data.json"), "--image_folder", tiny_world["image_folder"],
        "--mm_projector_type", "mlp2x_gelu", "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False", "--image_aspect_ratio", "pad", "--noise_generator", "True",
        "--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-3",
        "--lora_dropout", "0.1",
    ]


def child(backbone: str, argv: list[str], log: Path) -> subprocess.Popen:
    env = child_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    cmd = [sys.executable, *rank_log_command(backbone, log.parent / "rank_log", argv)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def train(recipe, output_dir: Path, *extra: str, monkeypatch=None) -> None:
    """One run to the end: Qwen in this process, LLaVA as a child."""
    backbone, argv = recipe
    argv = argv + ["--output_dir", str(output_dir), *extra]
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if backbone == "qwen":
        from qwen_noise.train.train import train as train_qwen

        train_qwen(argv, callbacks=[RankLogCallback(output_dir.parent / "rank_log")])
        return
    log = output_dir.parent / "train.log"
    process = child(backbone, argv, log)
    try:
        assert process.wait(timeout=400) == 0, tail(log)
    finally:
        kill_group(process)


def kill_after_first_checkpoint(recipe, output_dir: Path, timeout: float = 300) -> None:
    backbone, argv = recipe
    log = output_dir.parent / "killed.log"
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    process = child(backbone, argv + ["--output_dir", str(output_dir)], log)
    first = output_dir / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json"
    deadline = time.monotonic() + timeout
    try:
        while not first.is_file():
            assert process.poll() is None, f"the run ended before its first checkpoint:\n{tail(log)}"
            assert time.monotonic() < deadline, f"no {first} after {timeout} s:\n{tail(log)}"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        kill_group(process)
    assert not (output_dir / WEIGHTS_NAME).exists(), "the run finished before it was killed"


@pytest.fixture(scope="module")
def runs(recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(recipe, root / "uninterrupted" / "out")
    kill_after_first_checkpoint(recipe, root / "killed" / "out")
    first_checkpoint = root / "killed" / "out" / f"checkpoint-{SAVE_STEPS}"
    train(recipe, root / "explicit" / "out", "--resume_from_checkpoint", str(first_checkpoint))
    shutil.copytree(root / "killed" / "out", root / "auto" / "out")
    (root / "auto" / "out" / "checkpoint-999").mkdir()  # a checkpoint cut short by a kill while saving
    (root / "auto" / "out" / "checkpoint-999" / WEIGHTS_NAME).write_bytes(b"partial")
    train(recipe, root / "auto" / "out")
    return root


def max_abs_diff(a: Path, b: Path) -> float:
    first, second = load_file(a / WEIGHTS_NAME), load_file(b / WEIGHTS_NAME)
    assert first.keys() == second.keys()
    return max((first[k] - second[k]).abs().max().item() for k in first)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", BACKBONES, indirect=True)
@pytest.mark.parametrize("how", ["explicit", "auto"])
def test_resumed_run_ends_with_the_uninterrupted_generator(recipe, runs, how):
    diff = max_abs_diff(runs / how / "out", runs / "uninterrupted" / "out")
    print(f"{recipe[0]} {how}: max |resumed - uninterrupted| = {diff:.3g}")
    assert diff <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("recipe", BACKBONES, indirect=True)
@pytest.mark.parametrize("how", ["explicit", "auto"])
def test_resumed_run_continues_after_the_checkpoint_instead_of_restarting(recipe, runs, how):
    killed = sorted(int(p.name.split("-")[1]) for p in (runs / "killed" / "out").glob("checkpoint-*")
                    if (p / "trainer_state.json").is_file())
    start = SAVE_STEPS if how == "explicit" else killed[-1]
    steps = [record["step"] for record in rank_logs(runs / how / "rank_log", 1)[0]]
    assert steps == list(range(start + 1, STEPS + 1))
