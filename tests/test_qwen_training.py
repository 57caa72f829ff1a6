"""Qwen2.5-VL + MuNG end to end on the tiny world: 30-step runs, checkpoints, the loader, eval, CLI, VLMEvalKit."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor

from mung.training.parameters import count_parameters
from noise_generator import WEIGHTS_NAME, NoiseGeneratorConfig
from qwen_noise.data import QwenDataCollator, QwenSupervisedDataset
from mung.checkpoints import checkpoint_kind
from qwen_noise.model.builder import load_model, load_pretrained_model
from qwen_noise.train.train import train

STEPS = 30


def run_training(tiny_world, data_path, output_dir, tune, *extra):
    argv = [
        "--model_name_or_path", tiny_world["qwen_model"], "--data_path", str(data_path),
        "--image_folder", tiny_world["image_folder"], "--output_dir", str(output_dir), "--tune", tune,
        "--per_device_train_batch_size", "4", "--max_steps", str(STEPS), "--learning_rate", "1e-2",
        "--lr_scheduler_type", "constant", "--logging_steps", "1", "--save_steps", "15", "--report_to", "none",
        "--use_cpu", "--disable_tqdm", "true", "--seed", "0", "--lora_r", "8", "--lora_alpha", "16",
        "--model_max_length", "256", *extra,
    ]
    return train(argv)


@pytest.fixture(scope="module")
def data_path(tiny_world, tmp_path_factory):
    records = json.loads(open(tiny_world["qwen_train_json"]).read())
    multi = [r for r in records if isinstance(r.get("image"), list)][:4]
    text = [r for r in records if not r.get("image")][:4]
    path = tmp_path_factory.mktemp("qwen_data") / "train64.json"
    path.write_text(json.dumps(records[:56] + multi + text))
    return path


@pytest.fixture(scope="module")
def runs(tiny_world, data_path, tmp_path_factory):
    """One 30-step run per tune, shared by the tests below: {tune: (output_dir, trainer)}."""
    root = tmp_path_factory.mktemp("qwen_runs")
    extra = {"noise": (), "noise_lora": ("--ng_lr", "5e-3")}
    return {
        tune: (root / tune, run_training(tiny_world, data_path, root / tune, tune, *extra[tune]))
        for tune in ("noise", "noise_lora")
    }


@pytest.fixture(scope="module")
def processor(tiny_world):
    return AutoProcessor.from_pretrained(tiny_world["qwen_model"])


@torch.no_grad()
def mean_loss(model, processor, tiny_world, data_path, noise_mode="mean"):
    """Deterministic loss over the first 32 training samples (generator in mean mode)."""
    dataset = QwenSupervisedDataset(data_path, processor, image_folder=tiny_world["image_folder"], model_max_length=256)
    collate = QwenDataCollator(processor.tokenizer.pad_token_id)
    model.eval()
    losses = [model(**collate([dataset[j] for j in range(i, i + 16)]), noise_mode=noise_mode).loss for i in (0, 16)]
    return torch.stack(losses).mean().item()


def logged_losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("tune", ["noise", "noise_lora"])
def test_thirty_steps_lower_the_training_loss(runs, tune):
    losses = logged_losses(runs[tune][1])
    assert len(losses) == STEPS
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"--tune {tune}: training loss, mean of first 5 steps {first:.3f} -> last 5 steps {last:.3f}")
    assert last < first - 0.05


@pytest.mark.parametrize("tune", ["noise", "noise_lora"])
def test_trained_generator_beats_its_initialisation(runs, tune, tiny_world, processor, data_path):
    out, _ = runs[tune]
    _, trained = load_pretrained_model(out, tiny_world["qwen_model"])
    after = mean_loss(trained, processor, tiny_world, data_path)
    fresh_config = NoiseGeneratorConfig.from_json_file(out / "noise_generator_config.json")
    torch.manual_seed(0)
    before = mean_loss(load_model(tiny_world["qwen_model"], generator=fresh_config), processor, tiny_world, data_path)
    print(f"--tune {tune}: eval loss (mean mode) with a fresh generator {before:.3f} -> trained {after:.3f}")
    assert after < before - 0.05


def test_noise_run_trains_only_the_generator(runs):
    model = runs["noise"][1].model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.noise_generator.") for name in trainable)


def test_noise_lora_run_trains_generator_and_llm_lora_only(runs):
    trainable = {name for name, p in runs["noise_lora"][1].model.named_parameters() if p.requires_grad}
    generator = {n for n in trainable if ".noise_generator." in n}
    lora = trainable - generator
    assert generator and lora and all("lora_" in n and ".language_model.layers." in n for n in lora)


def test_generator_gets_its_own_learning_rate(runs):
    trainer = runs["noise_lora"][1]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for group in trainer.optimizer.param_groups:
        is_generator = {".noise_generator." in names[id(p)] for p in group["params"]}
        assert len(is_generator) == 1  # a group is all generator or no generator
        assert group["lr"] == (5e-3 if is_generator.pop() else 1e-2)


def test_noise_checkpoints_hold_only_generator_tensors(runs):
    out, trainer = runs["noise"]
    for folder in (out, out / "checkpoint-15", out / f"checkpoint-{STEPS}"):
        assert checkpoint_kind(folder) == "generator"
        tensors = load_file(folder / WEIGHTS_NAME)
        generator = trainer.model.model.noise_generator
        assert set(tensors) == set(generator.state_dict())
        assert not any((folder / name).exists() for name in ("model.safetensors", "adapter_model.safetensors"))
        assert (folder / "processor_config.json").is_file() and (folder / "tokenizer.json").is_file()


def test_noise_lora_checkpoints_hold_adapter_and_generator(runs):
    out, _ = runs["noise_lora"]
    for folder in (out, out / "checkpoint-15"):
        assert checkpoint_kind(folder) == "lora"
        assert (folder / "adapter_model.safetensors").is_file() and (folder / WEIGHTS_NAME).is_file()
        adapter = load_file(folder / "adapter_model.safetensors")
        assert adapter and all("lora_" in k and "noise_generator" not in k and "visual" not in k for k in adapter)


def batch_of(processor, tiny_world, data_path, n=6):
    dataset = QwenSupervisedDataset(data_path, processor, image_folder=tiny_world["image_folder"], model_max_length=256)
    return QwenDataCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(n)])


@pytest.mark.parametrize("tune", ["noise", "noise_lora"])
def test_save_then_load_gives_identical_logits_in_mean_mode(runs, tune, tiny_world, processor, data_path):
    out, trainer = runs[tune]
    batch = batch_of(processor, tiny_world, data_path)
    model = trainer.model.eval()
    with torch.no_grad():
        expected = model(**batch, noise_mode="mean").logits
        _, loaded = load_pretrained_model(out, tiny_world["qwen_model"])  # LoRA is merged here
        got = loaded(**batch, noise_mode="mean").logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_intermediate_checkpoint_loads_and_resumes(runs, tiny_world, data_path, tmp_path):
    out, _ = runs["noise"]
    _, model = load_pretrained_model(out / "checkpoint-15", tiny_world["qwen_model"])
    saved = load_file(out / "checkpoint-15" / WEIGHTS_NAME)
    assert all(torch.equal(model.model.noise_generator.state_dict()[k], v) for k, v in saved.items())
    # Resuming from checkpoint-15 restores the generator and the trainer state, and continues (two more steps).
    shutil.copytree(out / "checkpoint-15", tmp_path / "checkpoint-15")
    trainer = run_training(
        tiny_world, data_path, tmp_path, "noise", "--resume_from_checkpoint", str(tmp_path / "checkpoint-15"),
        "--max_steps", "17",
    )
    assert trainer.state.global_step == 17
    assert len(logged_losses(trainer)) == 17  # the resumed steps are added to the restored history


def test_loader_decides_from_files_not_folder_names(runs, tiny_world, tmp_path):
    out, _ = runs["noise"]
    misleading = tmp_path / "qwen-lora-full-merged"
    shutil.copytree(out, misleading)
    assert checkpoint_kind(misleading) == "generator"
    with pytest.raises(ValueError, match="--model-base"):
        load_pretrained_model(misleading)
    _, model = load_pretrained_model(misleading, tiny_world["qwen_model"])
    assert model.model.noise_generator is not None and model.dtype == torch.float32


def test_generator_checkpoint_refuses_a_base_of_another_width(runs, tiny_world, tmp_path):
    shutil.copytree(runs["noise"][0], tmp_path, dirs_exist_ok=True)
    config = NoiseGeneratorConfig.from_json_file(tmp_path / "noise_generator_config.json")
    config.hidden_size = 128
    config.to_json_file(tmp_path / "noise_generator_config.json")
    with pytest.raises(ValueError, match="hidden size 128.*hidden size is 64"):
        load_pretrained_model(tmp_path, tiny_world["qwen_model"])


def test_eval_writes_llava_format_answers(runs, tiny_world, tmp_path):
    from qwen_noise.eval.model_vqa_loader import main

    questions = tmp_path / "questions.jsonl"
    lines = open(tiny_world["eval_questions"]).read().splitlines()[:4]
    questions.write_text("\n".join(lines) + "\n")
    answers = tmp_path / "answers" / "a.jsonl"
    args = [
        "--model-path", str(runs["noise"][0]), "--model-base", tiny_world["qwen_model"],
        "--image-folder", tiny_world["image_folder"], "--question-file", str(questions),
        "--answers-file", str(answers), "--noise-mode", "mean", "--max_new_tokens", "3", "--num-workers", "0",
    ]
    main(args)
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [json.loads(line)["question_id"] for line in lines]
    assert all(set(r) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} for r in rows)
    assert all(isinstance(r["text"], str) and r["metadata"]["noise_mode"] == "mean" for r in rows)
    main(args)  # mean mode is deterministic
    assert [json.loads(line)["text"] for line in answers.read_text().splitlines()] == [r["text"] for r in rows]


def test_cli_streams_replies_over_turns_and_exits_on_empty_line(runs, tiny_world, monkeypatch, capsys):
    from qwen_noise.serve.cli import main

    image = json.loads(open(tiny_world["eval_questions"]).readline())["image"]
    monkeypatch.setattr("sys.stdin", io.StringIO("What colour is it?\nAnd the shape?\n\n"))
    main([
        "--model-path", str(runs["noise_lora"][0]), "--image-file", f"{tiny_world['image_folder']}/{image}",
        "--temperature", "0", "--max-new-tokens", "3", "--noise-mode", "mean",
    ])
    printed = capsys.readouterr().out
    assert printed.count("ASSISTANT: ") == 2 and printed.rstrip().endswith("exit...")


def test_vlmeval_class_answers_a_hand_built_message(runs, tiny_world):
    from qwen_noise.vlmeval import QwenNoiseVLM

    vlm = QwenNoiseVLM(model_path=str(runs["noise"][0]), model_base=tiny_world["qwen_model"], noise_mode="mean", max_new_tokens=3)
    folder = tiny_world["image_folder"]
    message = [
        {"type": "image", "value": f"{folder}/eval/00000.png"},
        {"type": "image", "value": f"{folder}/eval/00001.png"},
        {"type": "text", "value": "Which image shows a red object, the first or the second?"},
    ]
    text, images = vlm.message_to_turn(message)
    assert text == "<image><image>\nWhich image shows a red object, the first or the second?" and len(images) == 2
    answer = vlm.generate_inner(message, dataset="MMBench_DEV_EN")
    assert isinstance(answer, str) and answer == vlm.generate(message)
    assert vlm.loaded.model.model.noise_generator is not None  # evaluated with the tuned generator, not the bare base


def test_qlora_4bit_trains_a_few_steps(tiny_world, data_path, tmp_path):
    trainer = run_training(tiny_world, data_path, tmp_path, "lora", "--bits", "4", "--max_steps", "2", "--save_steps", "100")
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules())
    assert all(torch.isfinite(torch.tensor(logged_losses(trainer))))
    assert (tmp_path / "adapter_model.safetensors").is_file()
    trainable, _ = count_parameters(trainer.model)
    assert trainable > 0


def test_noise_recipe_runs_on_the_tiny_world_on_cpu(tiny_world, data_path, tmp_path):
    env = {
        **os.environ, "HAS_GPU": "0", "MODEL_PATH": tiny_world["qwen_model"], "DATA_PATH": str(data_path),
        "IMAGE_FOLDER": tiny_world["image_folder"], "OUTPUT_DIR": str(tmp_path / "out"), "MAX_STEPS": "1",
        "BATCH_SIZE": "2", "GLOBAL_BATCH": "2", "NG_HEADS": "4", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(["bash", "scripts/qwen/finetune_noise.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--tune noise: trainable params" in result.stdout
    assert checkpoint_kind(tmp_path / "out") == "generator"


def full_tune_trainer(tiny_world, tmp_path, *extra):
    from transformers import HfArgumentParser

    from mung.training.flags import NoiseGeneratorArguments
    from qwen_noise.train.args import DataArguments, ModelArguments, TrainingArguments, check_flag_combinations
    from qwen_noise.train.prepare import prepare_model
    from qwen_noise.train.trainer import NoiseTrainer

    parser = HfArgumentParser((ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments))
    model_args, _, ng_args, training_args = parser.parse_args_into_dataclasses(args=[
        "--model_name_or_path", tiny_world["qwen_model"], "--data_path", "unused.json", "--output_dir", str(tmp_path),
        "--tune", "full", "--learning_rate", "1e-3", "--use_cpu", "--report_to", "none", *extra,
    ])
    check_flag_combinations(model_args, training_args, ng_args)
    model, _ = prepare_model(model_args, training_args, ng_args)
    return NoiseTrainer(model=model, args=training_args, tune="full")


def test_full_tune_gives_merger_and_vision_tower_their_own_learning_rates(tiny_world, tmp_path):
    trainer = full_tune_trainer(
        tiny_world, tmp_path, "--tune_vision_tower", "True", "--merger_lr", "1e-2", "--vision_lr", "2e-4"
    )
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(lr_of) == trainable
    merger = {n for n in trainable if ".visual.merger." in n}
    vision = {n for n in trainable if ".visual." in n} - merger
    assert merger and vision and trainable - merger - vision
    assert all(lr_of[n] == 1e-2 for n in merger)
    assert all(lr_of[n] == 2e-4 for n in vision)
    assert all(lr_of[n] == 1e-3 for n in trainable - merger - vision)


@pytest.mark.parametrize(
    "flags, message",
    [(("--merger_lr", "1e-2", "--tune", "noise"), "--merger_lr applies to --tune full only"),
     (("--vision_lr", "1e-4"), "--vision_lr needs --tune full --tune_vision_tower True")],
)
def test_group_learning_rates_of_frozen_parts_are_refused(tiny_world, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        full_tune_trainer(tiny_world, tmp_path, *flags)
