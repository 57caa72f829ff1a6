"""LLaVA training recipes on the tiny world: MuNG + LoRA lowers the loss, writes loadable checkpoints; QLoRA trains."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llava_noise.constants import IMAGE_TOKEN_INDEX
from llava_noise.model.builder import load_pretrained_model
from mung.checkpoints import read_tensor_file

REPO = Path(__file__).resolve().parents[1]


def run_recipe(script, world, output_dir, **env):
    full_env = dict(
        os.environ,
        MODEL_PATH=world["llava_llm"],
        VISION_TOWER=world["llava_vision_tower"],
        PRETRAIN_MM_MLP_ADAPTER="",
        DATA_PATH=world["llava_train_json"],
        IMAGE_FOLDER=world["image_folder"],
        OUTPUT_DIR=str(output_dir),
        HAS_GPU="0",
        NUM_GPUS="1",
        BATCH_SIZE="4",
        MODEL_MAX_LENGTH="256",
        NG_HEADS="4",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        **env,
    )
    result = subprocess.run(["bash", str(REPO / "scripts" / "v1_5" / script)], env=full_env, cwd=REPO,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]


@pytest.fixture(scope="module")
def noise_lora_run(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("noise_lora")
    history = run_recipe("finetune_noise_lora.sh", world, out, MAX_STEPS="30", SAVE_STEPS="15",
                         LOGGING_STEPS="1", SAVE_TOTAL_LIMIT="3", LR="1e-3", NG_LR="1e-3")
    return out, history


def test_noise_lora_recipe_lowers_the_loss(noise_lora_run):
    _, history = noise_lora_run
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"loss first 5 steps {first:.3f} -> last 5 steps {last:.3f}")
    assert last < first - 0.3


@pytest.mark.parametrize("sub", ["checkpoint-15", "checkpoint-30", "."])
def test_noise_lora_checkpoints_hold_adapter_projector_and_generator(noise_lora_run, sub):
    folder = noise_lora_run[0] / sub
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.json", "non_lora_trainables.bin",
                 "noise_generator.safetensors", "noise_generator_config.json"):
        assert (folder / name).is_file(), name
    tensors = read_tensor_file(folder / "non_lora_trainables.bin")
    assert any(k.startswith("base_model.model.model.noise_generator.q_proj") for k in tensors)
    assert any(k.startswith("base_model.model.model.mm_projector.0.") for k in tensors)
    assert all(t.numel() > 0 for t in tensors.values())
    config = json.loads((folder / "config.json").read_text())
    assert config["noise_generator"]["num_heads"] == 4
    assert config["version"] == "v1"  # the template, so chat/eval need no --conv-mode


def reference_logits(world, folder, inputs):
    """Unmerged: base + adapter through peft (no merge) + non-LoRA tensors, built here without the builder."""
    from peft import PeftModel

    from llava_noise.model import LlavaLlamaForCausalLM
    from llava_noise.model.builder import load_llava_config
    from mung.checkpoints import load_named_tensors

    config = load_llava_config(folder)
    model = LlavaLlamaForCausalLM.from_pretrained(world["llava_llm"], config=config)
    load_named_tensors(model, read_tensor_file(folder / "non_lora_trainables.bin"), "test")
    model = PeftModel.from_pretrained(model, str(folder)).eval()
    model.get_vision_tower().load_model()
    with torch.no_grad():
        return model(**inputs, noise_mode="mean").logits


def sample_inputs(model):
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 30, 31, 32, 33]])
    torch.manual_seed(0)
    return {"input_ids": ids, "images": torch.randn(1, 3, 56, 56)}


@pytest.mark.parametrize("sub", ["checkpoint-15", "."])
def test_builder_reloads_merged_and_unmerged_with_identical_logits(world, noise_lora_run, sub, tmp_path):
    folder = noise_lora_run[0] / sub
    _, model, processor, _ = load_pretrained_model(str(folder), world["llava_llm"], "run", device="cpu")
    assert processor is not None and model.dtype == torch.float32
    inputs = sample_inputs(model)
    with torch.no_grad():
        merged_in_builder = model(**inputs, noise_mode="mean").logits
    torch.testing.assert_close(merged_in_builder, reference_logits(world, folder, inputs), rtol=1e-4, atol=1e-4)

    merged_dir = tmp_path / "merged"
    subprocess.run([sys.executable, str(REPO / "scripts" / "merge_lora_weights.py"), "--model-path", str(folder),
                    "--model-base", world["llava_llm"], "--save-model-path", str(merged_dir)],
                   check=True, cwd=REPO, capture_output=True)
    _, merged, _, _ = load_pretrained_model(str(merged_dir), None, "merged", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs, noise_mode="mean").logits, merged_in_builder)


def test_builder_refuses_lora_checkpoint_without_generator_tensors(world, noise_lora_run, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(noise_lora_run[0] / "checkpoint-15", folder)
    tensors = read_tensor_file(folder / "non_lora_trainables.bin")
    torch.save({k: v for k, v in tensors.items() if "noise_generator" not in k}, folder / "non_lora_trainables.bin")
    for name in ("noise_generator.safetensors", "noise_generator_config.json"):
        (folder / name).unlink()  # the generator-only copy every checkpoint also holds
    with pytest.raises(ValueError, match=r"missing from the checkpoint and not restored by its files: \['model.noise_generator"):
        load_pretrained_model(str(folder), world["llava_llm"], "broken", device="cpu")


def test_qlora_4bit_recipe_trains(world, tmp_path):
    history = run_recipe("finetune_qlora.sh", world, tmp_path, MAX_STEPS="3", SAVE_STEPS="100", BITS="4",
                         NOISE="1", LORA_R="8", LORA_ALPHA="16")
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 3 and all(l == l and l < 20 for l in losses)
    tensors = read_tensor_file(tmp_path / "non_lora_trainables.bin")
    generator = {k: v for k, v in tensors.items() if "noise_generator" in k}
    assert generator and all(v.dtype == torch.float32 for v in generator.values())
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_pretrain_recipe_writes_loadable_projector(world, tmp_path):
    run_recipe("pretrain.sh", world, tmp_path, MAX_STEPS="3", SAVE_STEPS="2", SAVE_TOTAL_LIMIT="2")
    for folder in (tmp_path, tmp_path / "checkpoint-2"):
        assert (folder / "mm_projector.bin").is_file() and (folder / "config.json").is_file()
    _, model, _, _ = load_pretrained_model(str(tmp_path), world["llava_llm"], "pretrain", device="cpu")
    saved = read_tensor_file(tmp_path / "mm_projector.bin")
    torch.testing.assert_close(model.get_model().mm_projector[0].weight, saved["model.mm_projector.0.weight"])
