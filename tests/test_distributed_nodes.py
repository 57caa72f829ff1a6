"""Two nodes on one host: the Qwen2.5-VL MuNG recipe (scripts/qwen/finetune_noise.sh) started twice on 127.0.0.1 with
NNODES=2 and NODE_RANK 0 and 1 (one process each, gloo, ZeRO-3, both writing into one shared output folder) trains
exactly as the same recipe with one node of two processes: equal logged losses and an equal saved generator; the
result loads in this process and answers.

Each node's torchrun has local rank 0 for its only process, so a node-local rank taken for the global one would have
two processes saving, locking or clearing the shared folder."""

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_utils import REPO, child_env, free_port, kill_group, logged_losses, tail
from noise_generator import WEIGHTS_NAME

STEPS = 3
TIMEOUT = 420
RECIPE = REPO / "scripts" / "qwen" / "finetune_noise.sh"


@pytest.fixture(scope="module")
def recipe_env(tiny_world, tmp_path_factory) -> dict:
    """The recipe's settings for the tiny Qwen2.5-VL: batch 2 per process, a global batch of 4 (accumulation 1 on
    either layout), 3 steps, ZeRO-3 on CPU."""
    root = tmp_path_factory.mktemp("nodes_data")
    records = json.loads(Path(tiny_world["qwen_train_json"]).read_text())[: 4 * STEPS]
    (root / "train.json").write_text(json.dumps(records))
    return {
        "HAS_GPU": "0", "MODEL_PATH": tiny_world["qwen_model"], "DATA_PATH": str(root / "train.json"),
        "IMAGE_FOLDER": tiny_world["image_folder"], "DEEPSPEED_CONFIG": str(REPO / "scripts" / "zero3.json"),
        "BATCH_SIZE": "2", "GLOBAL_BATCH": "4", "MAX_STEPS": str(STEPS), "SAVE_STEPS": "2", "LR": "1e-2",
        "NG_HEADS": "4", "MODEL_MAX_LENGTH": "256", "NUM_WORKERS": "0",
        "EXTRA_ARGS": "--seed 0 --disable_tqdm True --train_sampling_strategy sequential",
    }


def node_exits(envs: list[dict], logs: list[Path]) -> list[int]:
    """Start one recipe per env at once, each in its own session; their exit codes (all killed and a failure after
    TIMEOUT s)."""
    processes, codes = [], []
    try:
        for env, log in zip(envs, logs):
            with open(log, "w") as handle:
                processes.append(subprocess.Popen(["bash", str(RECIPE)], cwd=REPO, env=child_env(**env), stdout=handle,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + TIMEOUT
        for process, log in zip(processes, logs):
            try:
                codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a node hung for {TIMEOUT} s:\n{tail(log)}") from None
    finally:
        for process in processes:
            kill_group(process)
    return codes


def run_nodes(envs: list[dict], logs: list[Path]) -> None:
    for code, log in zip(node_exits(envs, logs), logs):
        assert code == 0, f"node exited {code}:\n{tail(log)}"


def two_nodes(recipe_env: dict, output_dirs: list[Path]) -> list[dict]:
    port = str(free_port())
    return [{**recipe_env, "NUM_GPUS": "1", "NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": port, "OUTPUT_DIR": str(folder)} for rank, folder in enumerate(output_dirs)]


@pytest.fixture(scope="module")
def runs(recipe_env, tmp_path_factory) -> dict[str, Path]:
    """{"1x2": output of one node with two processes, "2x1": output of two nodes with one process each}."""
    root = tmp_path_factory.mktemp("nodes")
    single = {**recipe_env, "NUM_GPUS": "2", "MASTER_PORT": str(free_port()), "OUTPUT_DIR": str(root / "1x2")}
    run_nodes([single], [root / "1x2.log"])
    run_nodes(two_nodes(recipe_env, [root / "2x1"] * 2), [root / "2x1-node0.log", root / "2x1-node1.log"])
    return {"1x2": root / "1x2", "2x1": root / "2x1"}


@pytest.mark.slow
def test_two_nodes_log_the_losses_of_one_node_with_two_processes(runs):
    one, two = logged_losses(runs["1x2"]), logged_losses(runs["2x1"])
    assert sorted(one) == list(range(1, STEPS + 1))
    assert two == one  # the same ranks, batches and gloo reductions: bit for bit


@pytest.mark.slow
def test_two_nodes_save_the_generator_of_one_node_with_two_processes(runs):
    for folder in ("", "checkpoint-2"):
        one = load_file(runs["1x2"] / folder / WEIGHTS_NAME)
        two = load_file(runs["2x1"] / folder / WEIGHTS_NAME)
        assert one.keys() == two.keys() and one
        assert all(torch.equal(one[k], two[k]) for k in one), f"{folder or 'final'} generator differs"


@pytest.mark.slow
def test_the_shared_folder_holds_one_run_and_no_lock(runs):
    folder = runs["2x1"]
    assert not (folder / ".mung_run.lock").exists()
    assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS


@pytest.mark.slow
def test_the_two_node_result_loads_and_answers(runs, tiny_world):
    from qwen_noise.data import build_inference_inputs
    from qwen_noise.model.builder import load_pretrained_model

    out = runs["2x1"]
    processor, model = load_pretrained_model(out, tiny_world["qwen_model"], device="cpu")
    saved = load_file(out / WEIGHTS_NAME)
    state = model.model.noise_generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    turns = [("user", "<image>\nWhat colour is the shape?")]
    inputs = build_inference_inputs(processor, turns, ["train/00000.png"], image_folder=tiny_world["image_folder"])
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False, noise_mode="mean")
    assert output.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_nodes_with_their_own_output_folders_all_stop_before_loading(recipe_env, tmp_path):
    """Node 1's OUTPUT_DIR is not node 0's (a node-local disk): every rank stops with one line naming rank 1, exit 2,
    before any weights load; nothing hangs."""
    folders = [tmp_path / "node0" / "out", tmp_path / "node1" / "out"]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    codes = node_exits(two_nodes(recipe_env, folders), logs)
    message = (f"error: OutputDirNotShared: --output_dir {folders[0]} is not one folder for every node: rank 1 on "
               f"{socket.gethostname()} do(es) not see the lock rank 0 holds there")
    for code, log in zip(codes, logs):
        text = log.read_text()
        assert code != 0 and "OutputDirNotShared" in text, tail(log)
        assert "noise generator: new" not in text  # stopped before the model was built
    node0 = [line for line in logs[0].read_text().splitlines() if line.startswith("[rank0]: error:")]
    assert node0 and node0[0].startswith("[rank0]: " + message), node0
    assert not (folders[0] / ".mung_run.lock").exists()
