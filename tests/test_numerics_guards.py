"""Numerical safety on CPU: fp16/bf16 generator and model forwards with clamped log sigma, bf16 training steps,
NaN/inf in the generator output or loss caught with the step and sample ids (raise, or skip the batch), and fp16 loss
scaling with a gradient scaler around the generator."""

import json
import math

import pytest
import torch
from transformers import AutoProcessor, TrainerCallback

from noise_generator import NoiseGenerator, NoiseGeneratorConfig, NoiseOutput, PaddedNoiseOutput, load_noise_generator_state
from mung.training.nonfinite import NonFiniteError, upcast_trainable_half_params
from qwen_noise.data import QwenDataCollator, QwenSupervisedDataset
from qwen_noise.model.builder import load_model
from qwen_noise.train.args import TrainingArguments
from qwen_noise.train.train import train as train_qwen
from qwen_noise.train.trainer import NoiseTrainer

HIDDEN = 64
LOW_PRECISION = (torch.float16, torch.bfloat16)


# --- clamped log sigma and low-precision forwards ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("bias,bound", [(1e5, "log_sigma_max"), (-1e5, "log_sigma_min")])
def test_log_sigma_clamp_keeps_low_precision_noise_finite(dtype, bias, bound):
    torch.manual_seed(0)
    config = NoiseGeneratorConfig(hidden_size=HIDDEN, num_heads=4, log_sigma_min=-6.0, log_sigma_max=2.0)
    generator = NoiseGenerator(config)
    with torch.no_grad():
        generator.log_sigma_proj.bias.fill_(bias)  # +-inf once cast to fp16: exp would overflow without the clamp
    generator = generator.to(dtype).eval()
    images = [torch.randn(16, HIDDEN, dtype=dtype)]
    eps = [torch.randn(16, HIDDEN)]
    out = generator(images, torch.randn(1, 5, HIDDEN, dtype=dtype), torch.ones(1, 5, dtype=torch.bool), mode="sample", eps=eps)
    limit = getattr(config, bound)
    assert torch.all(out.log_sigma[0] == limit)
    expected = images[0].float() + out.mu[0].float() + math.exp(limit) * eps[0]  # by hand
    assert out.image_embeds[0].dtype == dtype and torch.isfinite(out.image_embeds[0]).all()
    torch.testing.assert_close(out.image_embeds[0].float(), expected, rtol=2e-2, atol=5e-2)


@pytest.fixture(scope="module")
def qwen_processor(tiny_world):
    return AutoProcessor.from_pretrained(tiny_world["qwen_model"])


@pytest.fixture(scope="module")
def qwen_data(tiny_world, tmp_path_factory):
    records = json.loads(open(tiny_world["qwen_train_json"]).read())[:16]
    path = tmp_path_factory.mktemp("numerics") / "train16.json"
    path.write_text(json.dumps(records))
    return path


def qwen_with_generator(tiny_world, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    config = NoiseGeneratorConfig(hidden_size=HIDDEN, num_heads=4, inference_mode="mean", base_model_type="qwen2_5_vl")
    return load_model(tiny_world["qwen_model"], generator=config, dtype=dtype)


def batch_of(tiny_world, processor, data_path, n=4):
    dataset = QwenSupervisedDataset(data_path, processor, image_folder=tiny_world["image_folder"], model_max_length=256)
    return QwenDataCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(n)])


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_qwen_forward_in_half_precision_matches_float32(tiny_world, qwen_processor, qwen_data, dtype):
    batch = batch_of(tiny_world, qwen_processor, qwen_data)
    model = qwen_with_generator(tiny_world).eval()
    with torch.no_grad():
        reference = model(**batch).logits
        low = model.to(dtype)(**batch).logits
    assert low.dtype == dtype and torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_llava_forward_in_half_precision_matches_float32(tiny_world, dtype):
    from llava_builders import tiny_llava_config
    from llava_noise.constants import IMAGE_TOKEN_INDEX
    from llava_noise.model import LlavaLlamaForCausalLM

    torch.manual_seed(0)
    config = tiny_llava_config(tiny_world, generator={"inference_mode": "mean"})
    model = LlavaLlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], config=config).eval()
    model.get_vision_tower().load_model()
    inputs = {"input_ids": torch.tensor([[1, IMAGE_TOKEN_INDEX, 30, 31, 32]]), "images": torch.randn(1, 3, 56, 56)}
    with torch.no_grad():
        reference = model(**inputs).logits
        model = model.to(dtype)
        low = model(input_ids=inputs["input_ids"], images=inputs["images"].to(dtype)).logits
    assert low.dtype == dtype and torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.05)


def test_bf16_training_steps_stay_finite_and_move_the_generator(tiny_world, qwen_data, tmp_path):
    trainer = train_qwen([
        "--model_name_or_path", tiny_world["qwen_model"], "--data_path", str(qwen_data),
        "--image_folder", tiny_world["image_folder"], "--output_dir", str(tmp_path), "--tune", "noise",
        "--ng_heads", "4", "--per_device_train_batch_size", "4", "--max_steps", "2", "--learning_rate", "1e-2",
        "--logging_steps", "1", "--save_steps", "100", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
        "--model_max_length", "256", "--bf16", "true", "--seed", "0",
    ])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    _, tensors = load_noise_generator_state(tmp_path)
    assert all(t.dtype == torch.bfloat16 and torch.isfinite(t).all() for t in tensors.values())
    fresh = qwen_with_generator(tiny_world, seed=0).model.noise_generator.state_dict()
    assert not torch.equal(tensors["mu_proj.weight"].float(), fresh["mu_proj.weight"].bfloat16().float())


# --- NaN/inf caught during training -------------------------------------------------------------------------------
class PoisonAt:
    """Forward hook making ``module``'s output NaN on its ``call``-th training call."""

    def __init__(self, module, call):
        self.call, self.calls = call, 0
        module.register_forward_hook(self)

    def __call__(self, module, args, output):
        if not module.training:
            return None
        self.calls += 1
        if self.calls != self.call:
            return None
        if isinstance(output, NoiseOutput):
            output.image_embeds = [x * float("nan") for x in output.image_embeds]
            return output
        if isinstance(output, PaddedNoiseOutput):
            output.image_embeds = output.image_embeds * float("nan")
            return output
        return output * float("inf")


class RecordingCollator(QwenDataCollator):
    batches: list

    def __call__(self, examples):
        batch = super().__call__(examples)
        self.batches.append(batch["sample_ids"])
        return batch


class GeneratorSnapshots(TrainerCallback):
    def __init__(self, generator):
        self.generator, self.after_step = generator, []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append({k: v.detach().clone() for k, v in self.generator.state_dict().items()})


def guarded_trainer(tiny_world, processor, data_path, tmp_path, on_nonfinite, poison):
    model = qwen_with_generator(tiny_world)
    model.requires_grad_(False)
    generator = model.model.noise_generator.requires_grad_(True)
    PoisonAt(generator if poison == "generator" else model.lm_head, call=2)
    collator = RecordingCollator(processor.tokenizer.pad_token_id, return_sample_ids=True)
    collator.batches = []
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, max_steps=3, per_device_train_batch_size=2,
                             learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
                             disable_tqdm=True, seed=0, on_nonfinite=on_nonfinite)
    dataset = QwenSupervisedDataset(data_path, processor, image_folder=tiny_world["image_folder"], model_max_length=256)
    trainer = NoiseTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator, tune="noise")
    snapshots = GeneratorSnapshots(generator)
    trainer.add_callback(snapshots)
    return trainer, collator, snapshots


def test_nan_in_generator_output_stops_training_naming_step_and_samples(tiny_world, qwen_processor, qwen_data, tmp_path):
    trainer, collator, _ = guarded_trainer(tiny_world, qwen_processor, qwen_data, tmp_path, "raise", "generator")
    with pytest.raises(NonFiniteError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "Non-finite (NaN/inf) loss and noise generator output at global step 2" in message
    second_batch = collator.batches[1]
    assert len(second_batch) == 2 and f"samples in this batch: {', '.join(second_batch)}." in message
    assert "--on_nonfinite skip_step" in message


def test_inf_loss_alone_is_reported_as_the_loss(tiny_world, qwen_processor, qwen_data, tmp_path):
    trainer, _, _ = guarded_trainer(tiny_world, qwen_processor, qwen_data, tmp_path, "raise", "lm_head")
    with pytest.raises(NonFiniteError, match=r"Non-finite \(NaN/inf\) loss at global step 2 .*samples in this batch: "
                                             r".*train16\.json sample \d+"):
        trainer.train()


def test_skip_step_drops_the_bad_batch_and_trains_on(tiny_world, qwen_processor, qwen_data, tmp_path):
    trainer, _, snapshots = guarded_trainer(tiny_world, qwen_processor, qwen_data, tmp_path, "skip_step", "generator")
    trainer.train()
    first, second, third = snapshots.after_step
    assert all(torch.equal(first[k], second[k]) for k in first)  # the poisoned step left the generator untouched
    assert not torch.equal(second["mu_proj.weight"], third["mu_proj.weight"])
    assert all(torch.isfinite(t).all() for t in third.values())
    counts = [h["nonfinite_skipped_batches"] for h in trainer.state.log_history if "nonfinite_skipped_batches" in h]
    assert counts and counts[-1] == 1
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


# --- fp16 loss scaling --------------------------------------------------------------------------------------------
def scaled_step(model, batch, scaler, optimizer):
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(**batch).loss
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def test_grad_scaler_needs_float32_master_weights_for_the_generator(tiny_world, qwen_processor, qwen_data):
    batch = batch_of(tiny_world, qwen_processor, qwen_data, n=2)
    model = qwen_with_generator(tiny_world, dtype=torch.float16)
    model.requires_grad_(False)
    model.model.noise_generator.requires_grad_(True)
    scaler = torch.amp.GradScaler("cpu")
    optimizer = torch.optim.AdamW(model.model.noise_generator.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        scaled_step(model, batch, scaler, optimizer)  # the reason for upcast_trainable_half_params
    optimizer.zero_grad(set_to_none=True)
    assert upcast_trainable_half_params(model) == len(list(model.model.noise_generator.parameters()))
    assert model.model.noise_generator.q_proj.weight.dtype == torch.float32
    assert model.lm_head.weight.dtype == torch.float16  # frozen weights stay half
    scaler = torch.amp.GradScaler("cpu")
    optimizer = torch.optim.AdamW(model.model.noise_generator.parameters(), lr=1e-3)
    before = model.model.noise_generator.mu_proj.weight.detach().clone()
    scaled_step(model, batch, scaler, optimizer)
    assert not torch.equal(before, model.model.noise_generator.mu_proj.weight)


def test_grad_scaler_skips_the_step_when_the_generator_overflows(tiny_world, qwen_processor, qwen_data):
    batch = batch_of(tiny_world, qwen_processor, qwen_data, n=2)
    model = qwen_with_generator(tiny_world)
    model.requires_grad_(False)
    generator = model.model.noise_generator.requires_grad_(True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=1e-3)
    scaled_step(model, batch, scaler, optimizer)
    assert scaler.get_scale() == 2.0**10  # a normal step keeps the scale (growth only after 2000 good steps)
    before = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    PoisonAt(generator, call=1)  # the next training call of the generator overflows
    model.train()
    scaled_step(model, batch, scaler, optimizer)
    assert scaler.get_scale() == 2.0**9  # the scaler saw inf/NaN gradients and backed off
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())  # and skipped the update
