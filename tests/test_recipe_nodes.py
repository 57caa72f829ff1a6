"""The recipes' multi-node settings (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, HOSTFILE; scripts/_launch_env.sh):
the launcher each picks and the flags it passes, and the one-line refusals of inconsistent settings.

Each case runs a recipe in a copy of scripts/ whose .venv/bin holds stubs of python, torchrun and deepspeed that
record their arguments (the real multi-node run is tests/test_distributed_nodes.py)."""

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
GPU_MODULES = {**MODULES, "llava": "llava_noise.train.train_mem"}
NODES = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29533"}


@pytest.fixture
def repo(tmp_path):
    """(root, record file, PATH): stubs of python, torchrun and deepspeed write '<name> <args>' to the record."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    record = tmp_path / "record.txt"
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "torchrun", "deepspeed"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {record}\n')
        (bin_dir / name).chmod(0o755)
    plain = tmp_path / "plain_bin"
    plain.mkdir()
    (plain / "python").symlink_to(os.path.realpath(sys.executable))  # outside any venv: the recipes use .venv
    return root, record, f"{plain}:/usr/bin:/bin"


def run_recipe(repo, script, **env):
    root, record, path = repo
    base = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": path, "HAS_GPU": "0", "OUTPUT_DIR": str(root / "out"),
            "MODEL_PATH": "m", "DATA_PATH": "d", "IMAGE_FOLDER": "i", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(root / script)], env={**base, **env}, capture_output=True, text=True,
                            timeout=60)
    calls = record.read_text().splitlines() if record.exists() else []
    return result, [call.split() for call in calls]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def node_flags(argv: list[str]) -> dict[str, str]:
    return {key: flag(argv, f"--{key.lower()}") for key in NODES}


@pytest.mark.parametrize("backbone", ["llava", "qwen", "vlm"])
def test_cpu_node_runs_torchrun_with_the_node_settings(backbone, repo):
    result, calls = run_recipe(repo, RECIPES[backbone], NUM_GPUS="1", **NODES)
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[0] == "torchrun"
    assert node_flags(argv) == NODES
    assert flag(argv, "--nproc_per_node") == "1" and flag(argv, "-m") == MODULES[backbone]
    assert flag(argv, "--ddp_backend") == "gloo"


@pytest.mark.parametrize("backbone", ["llava", "qwen", "vlm"])
def test_gpu_nodes_without_hostfile_run_torchrun_with_the_deepspeed_config(backbone, repo):
    result, calls = run_recipe(repo, RECIPES[backbone], HAS_GPU="1", NUM_GPUS="4", **NODES)
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[0] == "torchrun" and node_flags(argv) == NODES
    assert flag(argv, "--nproc_per_node") == "4" and flag(argv, "-m") == GPU_MODULES[backbone]
    assert flag(argv, "--deepspeed") == "./scripts/zero3.json"


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_a_hostfile_runs_the_deepspeed_launcher_over_its_hosts(backbone, repo, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode-a slots=8\n\nnode-b slots=8\n")
    result, calls = run_recipe(repo, RECIPES[backbone], HAS_GPU="1", HOSTFILE=str(hostfile), MASTER_ADDR="node-a")
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[0] == "deepspeed"
    assert flag(argv, "--hostfile") == str(hostfile) and flag(argv, "--num_nodes") == "2"
    assert flag(argv, "--num_gpus") == "8" and flag(argv, "--master_addr") == "node-a"
    assert flag(argv, "--master_port") == "29500" and flag(argv, "--module") == GPU_MODULES[backbone]


def test_a_hostfile_without_master_addr_leaves_the_address_to_deepspeed(repo, tmp_path):
    """DeepSpeed then takes the hostfile's first host; this script's one-node default 127.0.0.1 must not reach it."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    result, calls = run_recipe(repo, RECIPES["qwen"], HAS_GPU="1", HOSTFILE=str(hostfile))
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[0] == "deepspeed" and "--master_addr" not in argv


def test_one_gpu_node_keeps_the_deepspeed_launcher(repo):
    result, calls = run_recipe(repo, RECIPES["qwen"], HAS_GPU="1")
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[:3] == ["deepspeed", "--num_gpus", "8"] and "--nnodes" not in argv


@pytest.mark.parametrize("nodes, accumulation", [("1", "4"), ("2", "2"), ("4", "1")])
def test_gradient_accumulation_keeps_the_global_batch_over_every_node(repo, nodes, accumulation):
    """GLOBAL_BATCH 128 = nodes x 8 GPUs x batch 4 x accumulation."""
    result, calls = run_recipe(repo, RECIPES["qwen"], HAS_GPU="1", NNODES=nodes, MASTER_ADDR="10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert flag(calls[0], "--gradient_accumulation_steps") == accumulation


REFUSALS = [
    ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "a"}, "NODE_RANK=2 with NNODES=2"),
    ({"NNODES": "0"}, "NNODES=0"),
    ({"NNODES": "two"}, "NNODES=two"),
    ({"NNODES": "2", "NODE_RANK": "-1", "MASTER_ADDR": "a"}, "NODE_RANK=-1"),
    ({"NNODES": "2"}, "NNODES=2 needs MASTER_ADDR"),
    ({"NNODES": "2", "MASTER_ADDR": "a", "MASTER_PORT": "70000"}, "MASTER_PORT=70000"),
    ({"HAS_GPU": "1", "HOSTFILE": "/nonexistent/hostfile"}, "HOSTFILE=/nonexistent/hostfile: no such file"),
    ({"HAS_GPU": "1", "HOSTFILE": "@", "NODE_RANK": "1"}, "NODE_RANK=1 with HOSTFILE"),
    ({"HAS_GPU": "1", "HOSTFILE": "@", "NNODES": "3"}, "NNODES=3 but HOSTFILE="),
    ({"HAS_GPU": "0", "HOSTFILE": "@"}, "HOSTFILE is for the deepspeed launcher on GPU nodes"),
]


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
@pytest.mark.parametrize("settings, message", REFUSALS, ids=[m.split(":")[0] for _, m in REFUSALS])
def test_inconsistent_node_settings_are_refused_in_one_line(backbone, settings, message, repo, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    settings = {key: str(hostfile) if value == "@" else value for key, value in settings.items()}
    result, calls = run_recipe(repo, RECIPES[backbone], **settings)
    assert result.returncode == 2 and calls == []
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and message.replace("@", str(hostfile)) in line


@pytest.mark.parametrize("script", ["scripts/v1_5/compare.sh", "scripts/qwen/compare.sh"])
def test_a_comparison_on_several_nodes_needs_a_hostfile(script, repo):
    result, calls = run_recipe(repo, script, NNODES="2", NODE_RANK="1", MASTER_ADDR="a")
    assert result.returncode == 2 and calls == []
    [line] = result.stderr.splitlines()
    assert line.startswith("error: NNODES=2: a comparison trains and evaluates from one node; give HOSTFILE")


def test_the_slurm_example_runs_the_recipe_once_per_node_with_its_rank(repo, tmp_path):
    """scripts/slurm/train_2nodes.sbatch under stand-ins of srun (runs the command once per node, SLURM_NODEID 0 and
    1) and scontrol (the job's host names): each node's torchrun gets its node rank and the first host."""
    root, record, path = repo
    fake = tmp_path / "slurm_bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/bash\nfor node in 0 1; do while [ "${1#--}" != "$1" ]; do shift; done\n'
                               '  SLURM_NODEID=$node "$@" || exit $?; done\n')
    (fake / "scontrol").write_text('#!/bin/sh\nprintf "gpu-a01\\ngpu-a02\\n"\n')
    for tool in ("srun", "scontrol"):
        (fake / tool).chmod(0o755)
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": f"{fake}:{path}", "HAS_GPU": "1", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "gpu-a[01-02]", "OUTPUT_DIR": str(root / "out"), "MODEL_PATH": "m"}
    result = subprocess.run(["bash", "scripts/slurm/train_2nodes.sbatch"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = [call.split() for call in record.read_text().splitlines()]
    assert [c[0] for c in calls] == ["torchrun", "torchrun"]
    for rank, argv in enumerate(calls):
        assert node_flags(argv) == {"NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "gpu-a01",
                                    "MASTER_PORT": "29500"}
        assert flag(argv, "--nproc_per_node") == "8" and flag(argv, "-m") == MODULES["qwen"]
