"""Qwen2.5-VL + MuNG model: parity with transformers' stock class, where the noise enters, m-sample training, loading."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling

from mung.training.parameters import count_parameters, describe_trainable
from noise_generator import NoiseGeneratorConfig, PaddedNoiseOutput, text_key_mask
from qwen_noise.model import Qwen2_5_VLNoiseConfig, Qwen2_5_VLNoiseForConditionalGeneration
from qwen_builders import mixed_batch
from qwen_noise.model.builder import load_model, noise_config


def generator_config(hidden_size=64, num_heads=4, **overrides):
    return NoiseGeneratorConfig(hidden_size=hidden_size, num_heads=num_heads, base_model_type="qwen2_5_vl", **overrides)


@pytest.fixture(scope="module")
def qwen_path(tiny_world):
    return tiny_world["qwen_model"]


@pytest.fixture(scope="module")
def processor(qwen_path):
    return AutoProcessor.from_pretrained(qwen_path)


@pytest.fixture(scope="module")
def stock(qwen_path):
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_path).eval()


@pytest.fixture(scope="module")
def batch(processor, tiny_world):
    return mixed_batch(processor, tiny_world)


@pytest.fixture(scope="module")
def noisy(qwen_path):
    """The tiny base with a fresh (xavier) generator."""
    torch.manual_seed(0)
    return load_model(qwen_path, generator=generator_config()).eval()


def test_generator_off_matches_stock_forward(stock, noisy, batch):
    with torch.no_grad():
        expected = stock(**batch).logits
        got = noisy(**batch, noise_mode="off").logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_zero_noise_through_injection_path_matches_stock_forward(stock, qwen_path, batch):
    # init="zero": mu = 0, so mean mode runs the whole injection path (own merger call, per-sample split,
    # generator, precomputed features) and must give the stock logits.
    model = load_model(qwen_path, generator=generator_config(init="zero")).eval()
    with torch.no_grad():
        expected = stock(**batch).logits
        got = model(**batch, noise_mode="mean").logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_greedy_generate_matches_stock(stock, noisy, batch):
    kwargs = dict(max_new_tokens=6, do_sample=False)
    expected = stock.generate(**batch, **kwargs)
    got = noisy.generate(**batch, noise_mode="off", **kwargs)
    assert torch.equal(got, expected)


def test_noise_matches_injection_computed_by_hand(stock, noisy, batch):
    """Reference: stock merger output, each sample noised alone with its own keys, fed to the stock forward."""
    with torch.no_grad():
        features = torch.cat(stock.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"]).pooler_output)
        embeds = stock.get_input_embeddings()(batch["input_ids"])
        image_mask = batch["input_ids"] == stock.config.image_token_id
        generator = noisy.model.noise_generator
        noised, start = [], 0
        for row in range(batch["input_ids"].shape[0]):
            n = int(image_mask[row].sum())
            keys = batch["attention_mask"][row].bool() & ~image_mask[row]
            one = generator([features[start : start + n]], embeds[row : row + 1], keys[None], mode="mean")
            noised.append(one.image_embeds[0])
            start += n
        inputs = {k: v for k, v in batch.items() if k != "pixel_values"}
        mm = {"image": BaseModelOutputWithPooling(pooler_output=(torch.cat(noised),))}
        expected = stock(**inputs, mm_encoder_outputs=mm).logits
        got = noisy(**batch, noise_mode="mean").logits
        off = noisy(**batch, noise_mode="off").logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got - off).abs().max() > 1e-3  # the generator really changed the image tokens


def test_noise_enters_once_at_generation_prefill(noisy, batch):
    calls = []
    handle = noisy.model.noise_generator.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    try:
        noisy.generate(**batch, max_new_tokens=4, do_sample=False, noise_mode="mean")
    finally:
        handle.remove()
    assert calls == [batch["input_ids"].shape[0]]  # one call, for every sample of the batch, at prefill


def test_padding_and_image_tokens_are_never_keys(batch, noisy):
    keys = text_key_mask(batch["attention_mask"], batch["input_ids"] == noisy.config.image_token_id)
    assert not keys[batch["attention_mask"] == 0].any()
    assert not keys[batch["input_ids"] == noisy.config.image_token_id].any()


def test_num_samples_averages_loss_over_draws(qwen_path, batch):
    """m = 3: the loss equals the plain loss of the batch repeated three times by hand under the same draws."""
    m = 3
    model = load_model(qwen_path, generator=generator_config(num_samples=m)).train()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(1)
    loss_m = model(**batch, labels=labels).loss

    reference = load_model(qwen_path, generator=generator_config(num_samples=1)).train()
    reference.load_state_dict(model.state_dict())
    counts = (batch["image_grid_thw"].prod(-1) // 4).tolist()
    images_per_row = [2, 0, 1]  # the batch fixture's samples
    patches = batch["pixel_values"].split([c * 4 for c in counts])
    grids, pixels, image = [], [], 0
    for row, k in enumerate(images_per_row):
        for _ in range(m):
            grids.append(batch["image_grid_thw"][image : image + k])
            pixels.extend(patches[image : image + k])
        image += k
    repeated = {
        k: batch[k].repeat_interleave(m, dim=0) for k in ("input_ids", "attention_mask", "mm_token_type_ids")
    }
    torch.manual_seed(1)
    out = reference(
        **repeated,
        pixel_values=torch.cat(pixels),
        image_grid_thw=torch.cat(grids),
        labels=labels.repeat_interleave(m, dim=0),
    )
    torch.testing.assert_close(loss_m, out.loss, rtol=1e-5, atol=1e-5)
    # Rows 0 and 1 are two copies of sample 0 that drew different noise.
    assert (out.logits[0] - out.logits[1]).abs().max() > 1e-4


def test_stock_checkpoint_loads_with_only_generator_missing(qwen_path):
    model, info = Qwen2_5_VLNoiseForConditionalGeneration.from_pretrained(
        qwen_path, config=noise_config(qwen_path, generator_config()), output_loading_info=True
    )
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert sorted(info["missing_keys"]) == sorted(f"model.noise_generator.{k}" for k in model.model.noise_generator.state_dict())


def test_saved_model_reloads_generator_and_stock_class_reads_it(noisy, qwen_path, tmp_path, batch):
    noisy.save_pretrained(tmp_path)
    reloaded = load_model(tmp_path, generator_may_be_missing=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch, noise_mode="mean").logits, noisy(**batch, noise_mode="mean").logits)
    # The file keeps the stock (legacy) key layout plus model.noise_generator.*, so transformers' own class loads
    # every weight of it (the generator is its only extra).
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert {k for k in keys if "noise_generator" in k} == {f"model.noise_generator.{k}" for k in noisy.model.noise_generator.state_dict()}
    assert keys - {k for k in keys if "noise_generator" in k} == set(load_file(f"{qwen_path}/model.safetensors"))
    stock, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert info["unexpected_keys"] and all("noise_generator" in key for key in info["unexpected_keys"])


def test_unexpected_checkpoint_tensor_is_an_error(qwen_path, tmp_path):
    import shutil

    shutil.copytree(qwen_path, tmp_path, dirs_exist_ok=True)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["model.layers.0.extra.weight"] = torch.zeros(2)
    del tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing.*up_proj.*unexpected.*extra"):
        load_model(tmp_path, generator=generator_config())


def test_trainable_share_of_generator_on_3b_shaped_model():
    """Qwen2.5-VL-3B shapes on the meta device (no weights): the generator is about 0.67% of the model."""
    config = Qwen2_5_VLNoiseConfig(
        text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           fullatt_block_indexes=[7, 15, 23, 31], window_size=112),
        tie_word_embeddings=True,
        noise_generator=generator_config(hidden_size=2048, num_heads=8).to_dict(),
    )
    with torch.device("meta"):
        model = Qwen2_5_VLNoiseForConditionalGeneration(config)
    model.requires_grad_(False)
    model.model.noise_generator.requires_grad_(True)
    trainable, total = count_parameters(model)
    print(f"Qwen2.5-VL-3B-shaped: {describe_trainable(model)}")
    assert trainable == 6 * (2048 * 2048 + 2048)
    assert 0.6 < 100 * trainable / total < 0.75


def record_generator_calls(generator):
    """Forward hook: every call's key mask (the generator's third argument) and its noise."""
    calls = []
    hook = lambda module, args, out: calls.append((args[2].clone(), out.per_sample().noise))  # noqa: E731
    return calls, generator.register_forward_hook(hook)


@pytest.mark.parametrize("condition_on_answer", [True, False])
def test_answer_tokens_are_keys_only_in_training_with_condition_on_answer(qwen_path, batch, condition_on_answer):
    """Eval with labels (e.g. a validation loss) must not let the generator see the answer it is scored on."""
    answer_len = 3  # the batch is left-padded: its last three columns are real tokens of every row
    ids = batch["input_ids"]
    assert batch["attention_mask"][:, -answer_len:].all()
    other = ids.clone()
    other[:, -answer_len:] = torch.tensor([100, 101, 102])
    model = load_model(qwen_path, generator=generator_config(sample_noise=False, inference_mode="mean",
                                                             condition_on_answer=condition_on_answer))
    text = batch["attention_mask"].bool() & (ids != model.config.image_token_id)
    prompt_only = text.clone()
    prompt_only[:, -answer_len:] = False
    for training in (False, True):
        model.train(training)
        calls, handle = record_generator_calls(model.model.noise_generator)
        with torch.no_grad():
            for input_ids in (ids, other):
                labels = torch.full_like(input_ids, -100)
                labels[:, -answer_len:] = input_ids[:, -answer_len:]
                model(**{**batch, "input_ids": input_ids}, labels=labels)
        handle.remove()
        (keys, noise), (keys_other, noise_other) = calls
        sees_answer = training and condition_on_answer
        expected = text if sees_answer else prompt_only
        assert torch.equal(keys, expected) and torch.equal(keys_other, expected), f"training={training}"
        changed = [not torch.equal(a, b) for a, b in zip(noise, noise_other) if a.numel()]
        assert changed == [sees_answer, sees_answer], f"training={training}"  # the two samples with images


def token_loss_float64(logits, labels):
    """Mean next-token cross-entropy over the supervised positions, in float64, by hand."""
    log_probs = logits[:, :-1].double().log_softmax(-1)
    targets = labels[:, 1:]
    picked = targets != -100
    return -log_probs[picked].gather(-1, targets[picked][:, None]).mean()


@pytest.mark.parametrize("m", [1, 3])
def test_num_items_in_batch_gives_the_mean_over_noise_draws(qwen_path, batch, m):
    """A direct forward with the true supervised-token count gives the mean loss over the m draws, each draw's loss
    recomputed by hand (an m = 1 run fed that draw's noised features, float64 CE)."""
    model = load_model(qwen_path, generator=generator_config(num_samples=m)).train()
    generator = model.model.noise_generator
    labels = torch.full_like(batch["input_ids"], -100)
    for row, answer_len in enumerate((2, 3, 4)):  # left-padded: the last columns are real tokens
        labels[row, -answer_len:] = batch["input_ids"][row, -answer_len:]
    n_items = torch.tensor(9)  # 2 + 3 + 4 supervised next-token targets, counted by hand
    outputs, draws = {}, []
    with torch.no_grad():
        for counted in (False, True):
            handle = generator.register_forward_hook(lambda module, args, out: draws.append(out.image_embeds))
            torch.manual_seed(11)
            extra = {"num_items_in_batch": n_items} if counted else {}
            outputs[counted] = model(**batch, labels=labels, **extra).loss
            handle.remove()
        assert all(torch.equal(a, b) for a, b in zip(*draws))  # both runs drew the same noise
        features = draws[0]  # sample-major: sample i, draw j at i * m + j
        generator.config.num_samples = 1
        per_draw = []
        for j in range(m):
            chosen = torch.stack([features[i * m + j] for i in range(3)])  # padded rows: the m = 1 batch's layout
            handle = generator.register_forward_hook(
                lambda module, args, out: PaddedNoiseOutput(image_embeds=chosen, image_mask=out.image_mask))
            per_draw.append(token_loss_float64(model(**batch).logits, labels))
            handle.remove()
    expected = torch.stack(per_draw).mean()
    torch.testing.assert_close(outputs[False].double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs[True].double(), expected, rtol=1e-5, atol=1e-6)
    if m > 1:
        assert torch.stack(per_draw).std() > 1e-5  # the draws really differ
