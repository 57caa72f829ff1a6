"""m noise draws per sample through a real training step of each backbone's Trainer (transformers 5.23).

What the Trainer does differs per backbone, and both must give the mean loss over the draws:
- LLaVA (Llama's forward takes ``**kwargs``): the Trainer counts the supervised tokens of the batch it loaded and
  passes ``num_items_in_batch``; the model scales it by m.
- Qwen2.5-VL (the stock class sets ``accepts_loss_kwargs = False``): no count is passed; the model's loss is the
  plain mean over the repeated batch and the Trainer divides it by the gradient-accumulation steps.
"""

import pytest
import torch
from transformers import TrainingArguments

from llava_builders import tiny_llava_config
from llava_noise.constants import IMAGE_TOKEN_INDEX
from llava_noise.model import LlavaLlamaForCausalLM
from llava_noise.train.trainer import LLaVATrainer
from noise_generator import NoiseGeneratorConfig
from qwen_noise.model.builder import load_model
from qwen_noise.train.trainer import NoiseTrainer

M = 3
ACCUMULATION = 2


def one_logged_step(trainer_cls, model, batch, output_dir, **trainer_kwargs):
    """One optimizer step over ``ACCUMULATION`` copies of ``batch``; returns (logged loss, the
    ``num_items_in_batch`` of every forward call, the trainer)."""
    seen = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("num_items_in_batch")), with_kwargs=True
    )
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=1, gradient_accumulation_steps=ACCUMULATION,
        max_steps=1, learning_rate=1e-9, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
        remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = trainer_cls(
        model=model, args=args, train_dataset=list(range(ACCUMULATION)), data_collator=lambda items: dict(batch),
        **trainer_kwargs,
    )
    trainer.train()
    handle.remove()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 1
    return losses[0], seen, trainer


def direct_mean_loss(model, batch):
    """The batch's plain mean loss in training mode with one draw (every draw is mu here: they are all equal)."""
    generator = model.get_model().noise_generator if hasattr(model, "get_model") else model.model.noise_generator
    generator.config.num_samples = 1
    with torch.no_grad():
        loss = model(**batch).loss.item()
    generator.config.num_samples = M
    return loss


def test_llava_trainer_step_with_m_draws_logs_the_mean_loss(tiny_world, tmp_path):
    torch.manual_seed(0)
    config = tiny_llava_config(tiny_world, generator={"num_samples": M, "sample_noise": False})
    model = LlavaLlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], config=config)
    model.get_vision_tower().load_model()
    model.train()
    batch = {
        "input_ids": torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 41, 42], [1, IMAGE_TOKEN_INDEX, 43, 44, 45]]),
        "attention_mask": torch.ones(2, 5, dtype=torch.long),
        "labels": torch.tensor([[-100, -100, -100, 41, 42], [-100, -100, 44, 45, 46]]),
        "images": torch.randn(2, 3, 56, 56),
    }
    expected = direct_mean_loss(model, batch)
    logged, seen, trainer = one_logged_step(LLaVATrainer, model, batch, tmp_path)
    assert trainer.model_accepts_loss_kwargs
    # The Trainer counts labels[:, 1:] != -100 over the step's micro-batches: 5 per batch, by hand.
    assert [int(n) for n in seen] == [5 * ACCUMULATION] * ACCUMULATION
    assert logged == pytest.approx(expected, rel=1e-5)


def test_qwen_trainer_step_with_m_draws_logs_the_mean_loss(tiny_world, tmp_path):
    from transformers import AutoProcessor
    from PIL import Image

    processor = AutoProcessor.from_pretrained(tiny_world["qwen_model"])
    folder = tiny_world["image_folder"]
    images = [Image.open(f"{folder}/train/{i:05d}.png") for i in (0, 1)]
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    batch = dict(processor(text=[text, text + "red"], images=images, padding=True, return_tensors="pt"))
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[:, : labels.shape[1] // 2] = -100  # supervise the second half only
    batch["labels"] = labels
    torch.manual_seed(0)
    ng = NoiseGeneratorConfig(hidden_size=64, num_heads=4, num_samples=M, sample_noise=False,
                              base_model_type="qwen2_5_vl")
    model = load_model(tiny_world["qwen_model"], generator=ng).train()
    model.requires_grad_(False)
    model.model.noise_generator.requires_grad_(True)
    expected = direct_mean_loss(model, batch)
    logged, seen, trainer = one_logged_step(NoiseTrainer, model, batch, tmp_path, tune="noise")
    assert not trainer.model_accepts_loss_kwargs  # stock Qwen2.5-VL: accepts_loss_kwargs = False
    assert seen == [None] * ACCUMULATION
    assert logged == pytest.approx(expected, rel=1e-5)
