"""Two-process DeepSpeed ZeRO-3 (CPU, gloo) training of a MuNG + LoRA adapter through TRL's SFTTrainer and peft
(``vlm_noise.train.trl_sft``) on the tiny Gemma 3: the generator is partitioned with the model, the saved adapter is
complete (gathered), and it reloads in this process (no DeepSpeed) to the logits the ZeRO-3 ranks computed."""

import json
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor

from distributed_utils import REPO, child_env, free_port, run_group
from peft_helpers import QUESTIONS, logits, mung_model, stock_model
from vlm_helpers import chat_batch, family_folder, world_images

WORLD = 2
TIMEOUT = 300


@pytest.fixture(scope="module")
def run(tiny_world, vlm_families, tmp_path_factory):
    root = tmp_path_factory.mktemp("trl_zero3")
    world = tiny_world["image_folder"].rsplit("/", 1)[0]
    images = [f"{tiny_world['image_folder']}/{json.loads(line)['image']}"
              for line in open(tiny_world["eval_questions"]).read().splitlines()[:2]]
    flags = ["--model_name_or_path", family_folder(vlm_families, "gemma3"), "--data_path",
             f"{world}/data/qwen_shift_train.json", "--image_folder", tiny_world["image_folder"], "--output_dir",
             str(root / "out"), "--mung", json.dumps({"num_heads": 4, "lora_r": 4}), "--max_records", "16",
             "--max_steps", "3", "--learning_rate", "1e-2", "--per_device_train_batch_size", "2", "--logging_steps",
             "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "True", "--bf16", "False",
             "--ddp_backend", "gloo", "--disable_tqdm", "True", "--dataloader_num_workers", "0", "--seed", "0",
             "--deepspeed", str(REPO / "scripts" / "zero3.json")]
    child = [str(REPO / "tests" / "trl_zero3_run.py"), "--logits_file", str(root / "logits.pt"),
             *[arg for path in images for arg in ("--image", path)], *flags]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), *child]
    run_group(cmd, child_env(), root / "train.log", TIMEOUT)
    return root


@pytest.mark.slow
def test_zero3_adapter_is_complete_and_reloads_to_the_ranks_logits(run, vlm_families, tiny_world):
    from peft import PeftModel

    folder = family_folder(vlm_families, "gemma3")
    fresh = {n.replace(".default.", "."): p for n, p in mung_model(folder, lora_r=4).named_parameters()
             if p.requires_grad}
    with safe_open(str(run / "out" / "adapter_model.safetensors"), framework="pt") as weights:
        saved = {key: weights.get_tensor(key) for key in weights.keys()}
    assert saved.keys() == fresh.keys()
    assert all(saved[k].shape == fresh[k].shape for k in saved)  # whole tensors, not ZeRO-3 partitions
    assert any(not torch.equal(saved[k], fresh[k].detach()) for k in saved if ".mung_generator." in k)
    processor = AutoProcessor.from_pretrained(folder)
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    reloaded = PeftModel.from_pretrained(stock_model(folder), str(run / "out")).eval()
    assert torch.allclose(logits(reloaded, batch), torch.load(run / "logits.pt"), atol=1e-5)
