"""TRL's SFTTrainer trains a MuNG adapter (``vlm_noise.train.trl_sft``) on the tiny Gemma 3 (MuNG + LoRA) and Qwen2-VL
(MuNG alone): 6 steps, only the adapter's weights move, the loss falls, and the saved adapter reloads with
identical logits and answers through the project's eval command."""

import json

import pytest
import torch
from transformers import AutoProcessor

from peft_helpers import logits, question_batch, stock_model
from vlm_helpers import family_folder

RUNS = [("gemma3", {"num_heads": 4, "lora_r": 4, "noise_mode": "mean"}), ("qwen2_vl", {"num_heads": 4,
                                                                                       "noise_mode": "mean"})]


def trl_flags(folder: str, tiny_world, out, mung: dict) -> list[str]:
    world = tiny_world["image_folder"].rsplit("/", 1)[0]
    return ["--model_name_or_path", folder, "--data_path", f"{world}/data/qwen_shift_train.json",
            "--image_folder", tiny_world["image_folder"], "--output_dir", str(out), "--mung", json.dumps(mung),
            "--max_steps", "6", "--learning_rate", "1e-2", "--per_device_train_batch_size", "4", "--max_records", "24",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--seed", "0",
            "--bf16", "False"]  # fp32 on CPU: accelerate would leave a bf16 autocast on the trained model's forward


@pytest.mark.parametrize("name, mung", RUNS, ids=[name for name, _ in RUNS])
def test_sft_trainer_trains_saves_and_the_project_loads_the_adapter(name, mung, vlm_families, tiny_world, tmp_path):
    from peft import PeftModel

    from mung.eval import model_vqa_loader
    from vlm_noise.train.trl_sft import main

    folder = family_folder(vlm_families, name)
    trainer = main(trl_flags(folder, tiny_world, tmp_path / "out", mung))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 6 and len(losses) == 6
    assert sum(losses[-2:]) < sum(losses[:2])
    model = trainer.model.eval()
    stock = stock_model(folder).state_dict()
    base = {k.replace("base_layer.", ""): v for k, v in model.get_base_model().state_dict().items()
            if ".mung." not in k and "lora_" not in k}
    assert base.keys() == stock.keys() and all(torch.equal(base[k], stock[k]) for k in stock)  # base untouched
    assert any(".lora_" in n for n, p in model.named_parameters() if p.requires_grad) == bool(mung.get("lora_r"))

    batch = question_batch(AutoProcessor.from_pretrained(folder), tiny_world)
    reloaded = PeftModel.from_pretrained(stock_model(folder), str(tmp_path / "out")).eval()
    assert torch.equal(logits(reloaded, batch), logits(model, batch))

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(open(tiny_world["eval_questions"]).readlines()[:3]))
    answers = tmp_path / "answers.jsonl"
    model_vqa_loader.main(["--model-path", str(tmp_path / "out"), "--image-folder", tiny_world["image_folder"],
                           "--question-file", str(questions), "--answers-file", str(answers), "--temperature", "0",
                           "--max_new_tokens", "4"])
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(records) == 3 and all(isinstance(r["text"], str) for r in records)
    assert records[0]["metadata"]["noise_mode"] == "mean (checkpoint default)"
