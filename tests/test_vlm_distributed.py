"""Two-process DeepSpeed ZeRO-3 training (CPU, gloo) of a transformers VLM family with MuNG + LoRA
(``python -m vlm_noise.train.train``), where one rank gets only text-only batches (the blank-image pass keeps the
ranks in step; without it the run hangs).

The run records every rank's loss and a float64 digest of its full trainable parameters per step
(``RankLogCallback`` through ``tests/rank_log_train.py``) and the gathered trainable tensors at the end. Checked:
the replicas stay identical while the ranks see different batches and the Trainer's logged loss is their mean; the
saved generator and adapter are complete and equal the gathered tensors; the output folder loads in this process
through ``mung.loading.load`` and answers.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_utils import REPO, child_env, free_port, logged_losses, rank_log_command, rank_logs, run_group
from noise_generator import WEIGHTS_NAME, find_noise_generator

FAMILY = "gemma3"
WORLD = 2
STEPS = 3
TIMEOUT = 240


@pytest.fixture(scope="module")
def run(tiny_world, vlm_families, tmp_path_factory):
    """Records image, image, text, text, ...: with sequential sampling rank 0 gets the image batches, rank 1 the
    text-only ones."""
    root = tmp_path_factory.mktemp("vlm_zero3")
    records = json.loads(Path(tiny_world["qwen_train_json"]).read_text())
    images = [r for r in records if isinstance(r.get("image"), str)]
    texts = [r for r in records if not r.get("image")]
    data = [r for k in range(STEPS) for r in images[2 * k: 2 * k + 2] + texts[2 * k: 2 * k + 2]]
    (root / "train.json").write_text(json.dumps(data))
    out = root / "out"
    args = [
        "--model_name_or_path", vlm_families[FAMILY], "--data_path", str(root / "train.json"), "--image_folder",
        tiny_world["image_folder"], "--output_dir", str(out), "--tune", "noise_lora", "--lora_r", "4",
        "--lora_alpha", "8", "--ng_heads", "4", "--learning_rate", "1e-2", "--per_device_train_batch_size", "2",
        "--max_steps", str(STEPS), "--save_steps", "2", "--logging_steps", "1", "--report_to", "none",
        "--use_cpu", "True", "--ddp_backend", "gloo", "--disable_tqdm", "True", "--dataloader_num_workers", "0",
        "--seed", "0", "--train_sampling_strategy", "sequential", "--deepspeed", str(REPO / "scripts" / "zero3.json"),
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), *rank_log_command("vlm", out / "rank_log", args)]
    run_group(cmd, child_env(), root / "train.log", TIMEOUT)
    return out


@pytest.mark.slow
def test_replicas_stay_identical_and_logged_loss_is_the_mean_of_the_ranks(run):
    logs = rank_logs(run / "rank_log", WORLD)
    logged = logged_losses(run)
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(range(1, STEPS + 1))
    for step in range(STEPS):
        records = [logs[rank][step] for rank in range(WORLD)]
        assert records[0]["digest"] == records[1]["digest"], f"ranks diverged at step {step + 1}"
        assert sum(r["loss"] for r in records) / WORLD == pytest.approx(logged[step + 1], abs=1e-5)
    assert records[0]["loss"] != records[1]["loss"], "both ranks trained on the same batch"
    assert logs[0][0]["digest"] != logs[0][-1]["digest"], "the trainable parameters never changed"


@pytest.mark.slow
def test_saved_generator_and_adapter_are_complete_and_equal_the_gathered_tensors(run):
    reference = torch.load(run / "rank_log" / "trainables.pt", weights_only=True)
    generator = {name.split("noise_generator.", 1)[1]: t for name, t in reference.items() if "noise_generator." in name}
    lora = {name.replace(".default.", "."): t for name, t in reference.items() if "lora_" in name}
    assert generator and lora and len(generator) + len(lora) == len(reference)
    for folder in (run, run / "checkpoint-2"):
        assert all(t.numel() > 0 for t in load_file(folder / WEIGHTS_NAME).values())
    saved = load_file(run / WEIGHTS_NAME)
    assert saved.keys() == generator.keys() and all(torch.equal(saved[k], generator[k]) for k in saved)
    adapter = load_file(run / "adapter_model.safetensors")
    assert adapter.keys() == lora.keys() and all(torch.equal(t, lora[k]) for k, t in adapter.items())


@pytest.mark.slow
def test_the_output_loads_in_one_process_and_answers(run, tiny_world):
    from mung.answering import answer_prompt
    from mung.backbones import Prompt
    from mung.generation import GenerationSettings
    from mung.images import load_image
    from mung.loading import LoadOptions, load

    loaded = load(str(run), options=LoadOptions(device="cpu"))  # the adapter names its base
    saved = load_file(run / WEIGHTS_NAME)
    generator = find_noise_generator(loaded.model).state_dict()
    assert all(torch.equal(generator[k], v) for k, v in saved.items())
    image = load_image(str(Path(tiny_world["image_folder"]) / "train" / "00000.png"))
    reply = answer_prompt(loaded, Prompt([("user", "<image>\nWhat colour is the shape?")], [image]),
                          GenerationSettings(temperature=0, max_new_tokens=3))
    assert isinstance(reply[0], str)
