"""The sync-free noise path: it equals the old per-sample code bit for bit (same seed, same noise) for the generator's
list and padded calls and for every backbone and family; a noised prefill of each backbone runs our part without any
op of ``sync_guard``'s list; the generator's forward compiles as one graph and matches eager."""

import pytest
import torch
import legacy_noise_path as legacy
from noise_generator import NoiseAttachment, NoiseGenerator, NoiseGeneratorConfig, NoiseGeneratorMixin
from sync_guard import HostSyncError, NoHostSync, guard_calls
from vlm_helpers import FAMILY_NAMES, family_folder, load_family, world_images
from vlm_noise import prompting

WIDTH = 64
QUESTIONS = ["What color is the shape?", "How many circles are there in this picture?"]
ANSWERS = ["red", "two"]


def make_generator(**settings) -> NoiseGenerator:
    torch.manual_seed(0)
    config = NoiseGeneratorConfig(hidden_size=WIDTH, num_heads=4, init="normal", init_std=0.2, **settings)
    return NoiseGenerator(config).eval()


def assert_lists_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and torch.equal(a, b)


# --- the guard itself -------------------------------------------------------------------------------------------------
SYNCING = {
    "item": lambda x, m: x.sum().item(),
    "bool": lambda x, m: bool(m.any()),
    "tolist": lambda x, m: m.sum(dim=1).tolist(),
    "cpu": lambda x, m: m.cpu(),
    "nonzero": lambda x, m: m.nonzero(),
    "where one argument": lambda x, m: torch.where(m),
    "boolean index": lambda x, m: x[m],
    "boolean index put": lambda x, m: x.clone().__setitem__(m, 0.0),
    "masked_select": lambda x, m: x.masked_select(m[..., None]),
    "masked_scatter": lambda x, m: x.masked_scatter(m[..., None].expand_as(x), x),
    "unique": lambda x, m: m.long().unique(),
    "repeat_interleave by tensor": lambda x, m: torch.repeat_interleave(m.long().sum(dim=1)),
    "equal": lambda x, m: torch.equal(x, x),
}


@pytest.mark.parametrize("construct", sorted(SYNCING))
def test_guard_fails_on_each_listed_construct(construct):
    x, m = torch.randn(2, 5, 4), torch.rand(2, 5) > 0.5
    with pytest.raises(HostSyncError):
        with NoHostSync():
            SYNCING[construct](x, m)


def test_guard_lets_fixed_shape_index_arithmetic_through():
    x, m = torch.randn(2, 5, 4), torch.rand(2, 5) > 0.5
    with NoHostSync() as mode:
        rank = (m.long().cumsum(1) - 1).clamp(min=0)
        x.gather(1, rank[..., None].expand_as(x)).index_select(0, torch.tensor([1, 0]))
        torch.where(m[..., None], x, 0.0).repeat_interleave(2, dim=0)
    assert any("cumsum" in op for op in mode.ops)


# --- the generator: list and padded calls against the old code --------------------------------------------------------
SETTINGS = [dict(kind=k, injection=i) for k in ("cross_attn", "mlp", "gaussian") for i in ("add", "mul")]


def sample_inputs(dtype=torch.float32):
    """Three samples with 5, 0 and 3 image tokens; the middle one has no key at all."""
    generator = torch.Generator().manual_seed(4)
    images = [torch.randn(n, WIDTH, generator=generator).to(dtype) for n in (5, 0, 3)]
    text = torch.randn(3, 9, WIDTH, generator=generator).to(dtype)
    keys = torch.rand(3, 9, generator=generator) > 0.4
    keys[1] = False
    return images, text, keys


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['kind']}-{s['injection']}")
@pytest.mark.parametrize("mode", ["sample", "mean"])
def test_list_call_equals_the_old_code(settings, mode):
    generator = make_generator(**settings)
    images, text, keys = sample_inputs()
    torch.manual_seed(5)
    got = generator(images, text, keys, mode=mode)
    torch.manual_seed(5)
    expected = legacy.generator_call(generator, images, text, keys, mode=mode)
    for field in ("image_embeds", "noise", "mu", "log_sigma"):
        assert_lists_equal(getattr(got, field), getattr(expected, field))
    torch.manual_seed(5)
    generator(images, text, keys, mode=mode)
    after_new = torch.randn(4)
    torch.manual_seed(5)
    legacy.generator_call(generator, images, text, keys, mode=mode)
    assert torch.equal(after_new, torch.randn(4))  # the list call draws exactly as many values as before


def test_list_call_in_bfloat16_with_given_eps_equals_the_old_code():
    generator = make_generator()
    images, text, keys = sample_inputs(torch.bfloat16)
    eps = [torch.randn(x.shape[0], WIDTH) for x in images]
    got = generator(images, text, keys, mode="sample", eps=eps)
    expected = legacy.generator_call(generator, images, text, keys, mode="sample", eps=eps)
    assert_lists_equal(got.image_embeds, expected.image_embeds)
    assert_lists_equal(got.noise, expected.noise)


def padded_layout(images, length: int, side: str):
    """The samples' image rows at scattered positions of a [B, length, d] batch (other rows random), padded on
    ``side`` (the padding rows come first for left padding)."""
    generator = torch.Generator().manual_seed(9)
    padded = torch.randn(len(images), length, WIDTH, generator=generator).to(images[0].dtype)
    mask = torch.zeros(len(images), length, dtype=torch.bool)
    for i, rows in enumerate(images):
        used = length - 2 - i  # shorter samples: more padding
        offset = length - used if side == "left" else 0
        positions = offset + torch.randperm(used, generator=generator)[: rows.shape[0]].sort().values
        mask[i, positions] = True
        padded[i, positions] = rows
    return padded, mask


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s['kind']}-{s['injection']}")
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_call_equals_the_old_code(settings, side):
    generator = make_generator(**settings)
    images, text, keys = sample_inputs()
    padded, mask = padded_layout(images, 12, side)
    torch.manual_seed(5)
    got = generator(padded, text, keys, mode="sample", image_mask=mask)
    torch.manual_seed(5)
    expected = legacy.generator_call(generator, images, text, keys, mode="sample")
    assert_lists_equal(got.per_sample().image_embeds, expected.image_embeds)
    assert_lists_equal(got.per_sample().noise, expected.noise)
    assert torch.equal(got.image_embeds[~mask], padded[~mask])  # every other row passes through bit for bit


def test_padded_call_leaves_a_sample_without_keys_unchanged_and_finite():
    generator = make_generator()
    images, text, keys = sample_inputs()
    images[1] = torch.randn(4, WIDTH)  # the sample without keys now has image tokens
    padded, mask = padded_layout(images, 12, "left")
    out = generator(padded, text, keys, mode="sample", image_mask=mask)
    assert torch.isfinite(out.image_embeds).all() and torch.isfinite(out.mu).all()
    assert torch.equal(out.image_embeds[1], padded[1])


def test_padded_call_takes_per_sample_eps_like_the_list_call():
    generator = make_generator()
    images, text, keys = sample_inputs()
    padded, mask = padded_layout(images, 12, "right")
    eps = [torch.randn(x.shape[0], WIDTH) for x in images]
    got = generator(padded, text, keys, mode="sample", eps=eps, image_mask=mask).per_sample()
    assert_lists_equal(got.noise, generator(images, text, keys, mode="sample", eps=eps).noise)


def test_padded_call_runs_without_a_listed_op():
    generator = make_generator()
    images, text, keys = sample_inputs()
    padded, mask = padded_layout(images, 12, "left")
    with NoHostSync() as mode:
        generator(padded, text, keys, mode="sample", image_mask=mask)
    assert any("scaled_dot_product" in op or "bmm" in op for op in mode.ops)  # the attention did run


# --- torch.compile ------------------------------------------------------------------------------------------------------
def test_forward_compiles_as_one_graph_and_matches_eager():
    generator = make_generator()
    images, text, keys = sample_inputs()
    padded, mask = padded_layout(images, 12, "left")
    torch._dynamo.reset()
    for args in ((padded, text, keys), (images, text, keys)):
        kwargs = {"mode": "sample", "image_mask": mask} if args[0] is padded else {"mode": "sample"}
        explanation = torch._dynamo.explain(generator.forward)(*args, **kwargs)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(generator.forward, fullgraph=True, backend="aot_eager")
    torch.manual_seed(2)
    got = compiled(padded, text, keys, mode="sample", image_mask=mask)
    torch.manual_seed(2)
    expected = generator(padded, text, keys, mode="sample", image_mask=mask)
    assert torch.equal(got.image_embeds, expected.image_embeds)
    torch._dynamo.reset()


# --- every transformers family (noise_generator.attach) ----------------------------------------------------------------
@pytest.fixture(params=FAMILY_NAMES)
def family(request, vlm_families):
    return request.param, family_folder(vlm_families, request.param)


def family_batch(processor, tiny_world, side: str, answers=None):
    texts = []
    for i, question in enumerate(QUESTIONS):
        turns = [("user", f"Look at this: <image>{question}")] + ([("assistant", answers[i])] if answers else [])
        texts.append(prompting.render(processor, prompting.messages_of(turns), add_generation_prompt=not answers))
    return prompting.process(processor, texts, [[image] for image in world_images(tiny_world)], padding_side=side)


def use_old_attach_path(monkeypatch):
    monkeypatch.setattr(NoiseAttachment, "noised_embeds", legacy.attach_noised_embeds)
    monkeypatch.setattr(NoiseAttachment, "noised_deepstack", legacy.attach_noised_deepstack)


@pytest.mark.parametrize("setting", ["prefill-left", "training-right"])
def test_family_noise_equals_the_old_code(family, setting, tiny_world, monkeypatch):
    name, folder = family
    model, processor = load_family(folder, generator={"inference_mode": "sample", "init": "normal", "init_std": 0.2})
    training = setting.startswith("training")
    batch = family_batch(processor, tiny_world, setting.split("-")[1], ANSWERS if training else None)
    if training:
        model.train()
        batch["labels"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    with torch.no_grad():
        torch.manual_seed(3)
        new = model(**batch).logits
        use_old_attach_path(monkeypatch)
        torch.manual_seed(3)
        old = model(**batch).logits
        off = model(**batch, noise_mode="off").logits
    assert not torch.equal(new, off)  # the noise did act
    assert torch.equal(new, old)


def test_family_prefill_hook_runs_without_a_listed_op(family, tiny_world, monkeypatch):
    name, folder = family
    modes = guard_calls(monkeypatch, NoiseAttachment, "before_decoder")  # before attach binds the hook
    model, processor = load_family(folder, generator={"inference_mode": "sample"})
    batch = family_batch(processor, tiny_world, "left")
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert modes and any("scaled_dot_product" in op or "bmm" in op for op in modes[0].ops)


# --- the two bespoke backbones ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen_batch(tiny_world):
    """Left padded: two images, none, one."""
    from transformers import AutoProcessor

    from qwen_builders import mixed_batch

    return mixed_batch(AutoProcessor.from_pretrained(tiny_world["qwen_model"]), tiny_world)


def qwen_model(tiny_world, **settings):
    from qwen_noise.model.builder import load_model

    torch.manual_seed(0)
    config = NoiseGeneratorConfig(hidden_size=WIDTH, num_heads=4, base_model_type="qwen2_5_vl", init="normal",
                                  init_std=0.2, **settings)
    return load_model(tiny_world["qwen_model"], generator=config)


@pytest.mark.parametrize("setting", ["prefill", "training-3-draws"])
def test_qwen_noise_equals_the_old_code(tiny_world, qwen_batch, setting, monkeypatch):
    from qwen_noise.model.modeling import Qwen2_5_VLNoiseModel

    training = setting != "prefill"
    model = qwen_model(tiny_world, num_samples=3 if training else 1).train(training)
    labels = torch.where(qwen_batch["attention_mask"].bool(), qwen_batch["input_ids"], -100) if training else None
    with torch.no_grad():
        torch.manual_seed(3)
        new = model(**qwen_batch, labels=labels, noise_mode="sample").logits
        monkeypatch.setattr(Qwen2_5_VLNoiseModel, "noised_image_features", legacy.qwen_noised_features)
        torch.manual_seed(3)
        old = model(**qwen_batch, labels=labels, noise_mode="sample").logits
    assert torch.equal(new, old)


def test_qwen_prefill_noise_runs_without_a_listed_op(tiny_world, qwen_batch, monkeypatch):
    from qwen_noise.model import modeling

    modes = guard_calls(monkeypatch, modeling.Qwen2_5_VLNoiseModel, "noised_image_features")
    guard_calls(monkeypatch, modeling, "text_key_mask")
    model = qwen_model(tiny_world, inference_mode="sample").eval()
    with torch.no_grad():
        model.generate(**qwen_batch, max_new_tokens=2, do_sample=False)
    assert len(modes) == 1  # prefill only


def llava_batch(world):
    from test_llava_model import build_llava, first_image, prompt_inputs

    from llava_noise.mm_utils import process_images

    model = build_llava(world, generator=True, seed=2)
    tokenizer, short = prompt_inputs(world, "Colour?")
    _, long = prompt_inputs(world, "What is the colour of the shape in the picture?")
    pixels = process_images([first_image(world)] * 2, model.get_vision_tower().image_processor, model.config)
    ids = torch.full((2, long.shape[0]), tokenizer.unk_token_id)
    mask = torch.zeros_like(ids)
    ids[0, -short.shape[0]:], mask[0, -short.shape[0]:] = short, 1  # left padded
    ids[1], mask[1] = long, 1
    return model, dict(input_ids=ids, attention_mask=mask, images=pixels)


@pytest.mark.parametrize("draws", [1, 2])
def test_llava_noise_equals_the_old_code(world, draws, monkeypatch):
    model, batch = llava_batch(world)
    generator = model.get_model().noise_generator
    generator.config.num_samples = draws
    model.train(draws > 1)
    with torch.no_grad():
        torch.manual_seed(3)
        new = model(**batch, noise_mode="sample").logits
        monkeypatch.setattr(NoiseGenerator, "forward", legacy.generator_call)
        torch.manual_seed(3)
        old = model(**batch, noise_mode="sample").logits
    assert torch.equal(new, old)


def test_llava_noise_call_runs_without_a_listed_op(world, monkeypatch):
    from llava_noise.model import llava_arch

    modes = guard_calls(monkeypatch, NoiseGeneratorMixin, "add_noise_to_image_features")
    guard_calls(monkeypatch, llava_arch, "text_key_mask")
    model, batch = llava_batch(world)
    with torch.no_grad():
        model(**batch, noise_mode="sample")
    assert len(modes) == 1
