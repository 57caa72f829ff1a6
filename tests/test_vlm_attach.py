"""noise_generator.attach on every tested transformers VLM family: off is the stock model, noise enters the image rows
only (at prefill), keys are the sample's text only, m draws average, generator-only checkpoints round-trip, and a
training step moves only the generator (and LoRA)."""

import math

import pytest
import torch
from transformers import AutoModelForImageTextToText

from noise_generator import (
    IGNORE_INDEX,
    attach_from_config,
    attach_pretrained,
    detach,
    find_noise_generator,
    mean_loss_over_draws,
    noise_mode,
    save_noise_generator,
)
from vlm_helpers import (
    FAMILY_NAMES,
    PREFIX_LM,
    DecoderInputs,
    GeneratorCalls,
    chat_batch,
    family_folder,
    load_family,
    world_images,
)

QUESTIONS = ["What color is the shape?", "How many circles are there in this picture?"]
ANSWERS = ["red", "two"]


@pytest.fixture(params=FAMILY_NAMES)
def family(request, vlm_families):
    return request.param, family_folder(vlm_families, request.param)


def placeholder_ids(config) -> set:
    ids = {getattr(config, "image_token_id", None), getattr(config, "image_token_index", None),
           getattr(config, "video_token_id", None), getattr(config, "video_token_index", None)}
    return {i for i in ids if isinstance(i, int)}


def test_mode_off_and_detach_give_the_stock_model_bit_for_bit(family, tiny_world):
    name, folder = family
    stock, processor = load_family(folder)
    model, _ = load_family(folder, generator={"inference_mode": "sample"})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    greedy = dict(max_new_tokens=4, do_sample=False)
    with torch.no_grad():
        reference, reference_tokens = stock(**batch).logits, stock.generate(**batch, **greedy)
        with noise_mode(model, "off"):
            off, off_tokens = model(**batch).logits, model.generate(**batch, **greedy)
        noised = model(**batch).logits
        assert torch.equal(off, reference) and torch.equal(off_tokens, reference_tokens)
        assert not torch.equal(noised, reference)  # the generator does act in mode sample
        detach(model)
        assert torch.equal(model(**batch).logits, reference)
    assert find_noise_generator(model) is None and not hasattr(model.config, "noise_generator")


def test_noise_changes_only_image_rows_and_only_at_prefill(family, tiny_world):
    name, folder = family
    stock, processor = load_family(folder)
    model, _ = load_family(folder, generator={"inference_mode": "sample"})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    clean, noisy = DecoderInputs(stock), DecoderInputs(model)
    calls = GeneratorCalls(find_noise_generator(model))
    with torch.no_grad():
        reference = stock(**batch).logits
        logits = model(**batch).logits
        model.generate(**batch, max_new_tokens=3, do_sample=False)
    image_rows = batch["input_ids"] == model.config.image_token_id
    changed = (noisy.seen[0] != clean.seen[0]).any(dim=-1)
    assert torch.equal(changed, image_rows)
    assert len(calls.key_masks) == 2  # the forward and the prefill of generate; decoding steps run no generator
    for row in range(len(QUESTIONS)):
        first_image = int(image_rows[row].nonzero()[0])
        text_before = int(batch["attention_mask"][row, :first_image].sum())
        if name in PREFIX_LM:
            # PaliGemma puts every image first and attends bidirectionally over images + prompt: no text row comes
            # before the first image, and every prompt row sees the noise.
            assert text_before == 0
        else:
            assert text_before > 0
            assert torch.equal(logits[row, :first_image], reference[row, :first_image])
        assert not torch.equal(logits[row, first_image:], reference[row, first_image:])


@pytest.mark.parametrize("condition_on_answer", [True, False])
def test_keys_are_the_samples_text_never_padding_or_placeholders(family, tiny_world, condition_on_answer):
    name, folder = family
    model, processor = load_family(folder, generator={"condition_on_answer": condition_on_answer})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS, ANSWERS)
    labels = batch["input_ids"].clone()
    labels[:, : labels.shape[1] - 3] = IGNORE_INDEX  # the last three rows of each sample are "the answer"
    calls = GeneratorCalls(find_noise_generator(model))
    model.train()
    model(**batch, labels=labels)
    model.eval()
    with torch.no_grad():
        model(**batch, labels=labels)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    assert (attention == 0).any(), "the batch must hold left padding for this test"
    text = attention.bool() & ~torch.isin(ids, torch.tensor(sorted(placeholder_ids(model.config))))
    prompt_only = text & (labels == IGNORE_INDEX)
    training_keys, eval_keys = calls.key_masks
    assert torch.equal(training_keys, text if condition_on_answer else prompt_only)
    assert torch.equal(eval_keys, prompt_only)  # outside training the answer is never a key


def float64_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropies over supervised positions, in float64, and their count."""
    shifted, targets = logits[:, :-1].double(), labels[:, 1:]
    keep = targets != IGNORE_INDEX
    log_probs = shifted.log_softmax(dim=-1)[keep]
    return -log_probs.gather(1, targets[keep][:, None]).sum(), int(keep.sum())


def test_m_draws_loss_is_the_mean_of_the_draws(family, tiny_world):
    name, folder = family
    model, processor = load_family(folder, generator={"num_samples": 3, "init": "normal", "init_std": 0.2})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS, ANSWERS)
    labels = torch.where(batch["attention_mask"].bool(), batch["input_ids"], IGNORE_INDEX)
    counts = (batch["input_ids"] == model.config.image_token_id).sum(dim=1).tolist()
    width = model.config.get_text_config().hidden_size
    generator = torch.Generator().manual_seed(1)
    eps = [[torch.randn(n, width, generator=generator) for n in counts] for _ in range(3)]
    calls = GeneratorCalls(find_noise_generator(model), eps)
    model.train()
    with torch.no_grad():
        loss = mean_loss_over_draws(model, {**batch, "labels": labels}).loss
        counted = mean_loss_over_draws(model, {**batch, "labels": labels, "num_items_in_batch": torch.tensor(5)}).loss
        draws = [float64_loss(model(**batch).logits, labels) for _ in range(3)]
    assert len(calls.key_masks) == 9  # 3 + 3 draws above, then 3 single forwards with the same eps
    expected = sum(total / count for total, count in draws) / 3
    expected_counted = sum(total for total, _ in draws) / (3 * 5)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    assert math.isclose(counted.item(), expected_counted.item(), rel_tol=1e-5)
    assert len({round(total.item(), 4) for total, _ in draws}) == 3  # the draws differ


def test_generator_only_checkpoint_reloads_to_identical_logits(family, tiny_world, tmp_path):
    name, folder = family
    model, processor = load_family(folder, generator={"inference_mode": "mean", "init": "normal", "init_std": 0.1})
    save_noise_generator(find_noise_generator(model), tmp_path / "generator")
    other = AutoModelForImageTextToText.from_pretrained(folder).eval()
    attach_pretrained(other, str(tmp_path / "generator"))
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, other(**batch).logits)
        torch.manual_seed(3)
        sampled = model(**batch, noise_mode="sample").logits
        torch.manual_seed(3)
        assert torch.equal(sampled, other(**batch, noise_mode="sample").logits)


def test_a_saved_model_reloads_with_its_generator_through_attach_from_config(family, tiny_world, tmp_path):
    name, folder = family
    model, processor = load_family(folder, generator={"inference_mode": "mean", "init": "normal", "init_std": 0.1})
    model.save_pretrained(tmp_path)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()  # the stock class: generator not attached
    generator, restored = attach_from_config(again, str(tmp_path))
    assert restored and generator.config.to_dict() == find_noise_generator(model).config.to_dict()
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def changed_parameters(model, before: dict) -> set:
    return {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}


@pytest.mark.parametrize("with_lora", [False, True])
def test_one_training_step_moves_only_the_generator_and_lora(family, tiny_world, with_lora):
    from peft import LoraConfig, get_peft_model

    name, folder = family
    model, processor = load_family(folder, generator={"init": "normal", "init_std": 0.02})
    model.requires_grad_(False)
    if with_lora:
        # The generator has q_proj / v_proj layers of its own: LoRA must leave them out.
        lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], exclude_modules=r".*noise_generator.*",
                          init_lora_weights=False)
        model = get_peft_model(model, lora)
    find_noise_generator(model).requires_grad_(True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS, ANSWERS)
    labels = torch.where(batch["attention_mask"].bool(), batch["input_ids"], IGNORE_INDEX)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    mean_loss_over_draws(model, {**batch, "labels": labels}).loss.backward()
    optimizer.step()
    moved = changed_parameters(model, before)
    generator_names = {n for n in trainable if ".noise_generator." in f".{n}"}
    assert generator_names and generator_names <= moved  # every generator tensor got a gradient
    assert moved <= trainable
    assert all("noise_generator" in n or "lora_" in n for n in moved)
    if with_lora:
        assert any("lora_" in n for n in moved)


def test_a_decoding_step_is_never_noised_even_on_a_placeholder_token(family, tiny_world):
    name, folder = family
    model, processor = load_family(folder, generator={"inference_mode": "sample"})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    prompt_length, image_token = batch["input_ids"].shape[1], model.config.image_token_id
    everything = list(range(model.config.get_text_config().vocab_size))

    def first_token_is_a_placeholder(row, ids):  # the next decoding step then feeds the placeholder id back in
        return [image_token] if ids.shape[-1] == prompt_length else everything

    calls = GeneratorCalls(find_noise_generator(model))
    with torch.no_grad():
        tokens = model.generate(**batch, max_new_tokens=3, do_sample=False,
                                prefix_allowed_tokens_fn=first_token_is_a_placeholder)
    assert (tokens[:, prompt_length] == image_token).all() and tokens.shape[1] == prompt_length + 3
    assert len(calls.key_masks) == 1  # prefill only


class DeepstackCopies:
    def __init__(self, model):
        self.seen = []
        self.handle = model.get_decoder().register_forward_pre_hook(
            lambda module, args, kwargs: self.seen.append([c.clone() for c in kwargs["deepstack_visual_embeds"]]),
            with_kwargs=True)


@pytest.mark.parametrize("noise_deepstack", [False, True])
def test_qwen3_vl_deepstack_copies_get_the_noise_only_with_the_flag(vlm_families, tiny_world, noise_deepstack):
    folder = vlm_families["qwen3_vl"]
    stock, processor = load_family(folder)
    model, _ = load_family(folder, generator={"inference_mode": "sample", "noise_deepstack": noise_deepstack})
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS)
    clean, seen = DeepstackCopies(stock), DeepstackCopies(model)
    calls = GeneratorCalls(find_noise_generator(model))
    with torch.no_grad():
        stock(**batch)
        model(**batch)
    noise = torch.cat(calls.outputs[0].per_sample().noise)  # the image rows in order, as the deepstack copies hold them
    assert len(clean.seen[0]) == 2
    for reference, copy in zip(clean.seen[0], seen.seen[0]):
        if noise_deepstack:
            assert torch.allclose(copy, reference + noise, atol=1e-6) and not torch.equal(copy, reference)
        else:
            assert torch.equal(copy, reference)


@pytest.mark.parametrize("noise_video", [False, True])
def test_video_rows_are_queries_only_with_the_flag_and_never_keys(vlm_families, noise_video):
    from noise_generator.attach import _CallInputs, attachment_of

    model, _ = load_family(vlm_families["qwen2_vl"], generator={"noise_video": noise_video})
    config = model.config
    ids = torch.tensor([[5, config.image_token_id, config.video_token_id, 6]])
    embeds = torch.zeros(1, 4, config.get_text_config().hidden_size)
    attachment = attachment_of(model)
    queries = attachment.query_mask(ids, embeds)
    keys = attachment.key_mask(_CallInputs(ids, torch.ones_like(ids), None, None), embeds)
    assert queries.tolist() == [[False, True, noise_video, False]]
    assert keys.tolist() == [[True, False, False, True]]


def test_attach_refuses_a_second_generator_a_peft_wrapper_and_a_model_without_image_token(vlm_families):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from noise_generator import NoiseGeneratorConfig, attach

    model, _ = load_family(vlm_families["llava"], generator={})
    with pytest.raises(ValueError, match="already has a noise generator"):
        attach(model, NoiseGeneratorConfig(hidden_size=64, num_heads=4))
    stock, _ = load_family(vlm_families["llava"])
    wrapped = get_peft_model(stock, LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="before wrapping the model with peft"):
        attach(wrapped, NoiseGeneratorConfig(hidden_size=64, num_heads=4))
    text_only = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=4, vocab_size=32))
    with pytest.raises(ValueError, match="no image_token_id"):
        attach(text_only, NoiseGeneratorConfig(hidden_size=64, num_heads=4))
    with pytest.raises(ValueError, match="hidden size 32"):
        attach(load_family(vlm_families["llava"])[0], NoiseGeneratorConfig(hidden_size=32, num_heads=4))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/outside.safetensors", "link/outside.safetensors"])
def test_an_index_naming_a_shard_outside_the_folder_is_refused_before_it_is_read(tmp_path, shard):
    import json

    from safetensors.torch import save_file

    from noise_generator import saved_generator_tensors

    folder, elsewhere = tmp_path / "ckpt", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    save_file({"noise_generator.mu.weight": torch.zeros(2, 2)}, str(elsewhere / "outside.safetensors"))
    (folder / "link").symlink_to(elsewhere)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
    with pytest.raises(ValueError, match=r"names the shard .*outside.safetensors.*, which is not inside"):
        saved_generator_tensors(str(folder))
    (folder / "model.safetensors.index.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"model.safetensors.index.json is not a safetensors index"):
        saved_generator_tensors(str(folder))
