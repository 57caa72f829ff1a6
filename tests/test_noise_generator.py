"""The shared noise generator: math against a float64 reference, batching, masking, variants, dtypes."""

import math

import pytest
import torch

from noise_generator import NoiseGenerator, NoiseGeneratorConfig

D, HEADS = 32, 4


def make_generator(seed=0, **overrides):
    torch.manual_seed(seed)
    return NoiseGenerator(NoiseGeneratorConfig(hidden_size=D, num_heads=HEADS, **overrides))


def make_batch(lengths=(5, 0, 3), text_lengths=(7, 4, 6), seed=1):
    """Image tokens per sample, right-padded text embeddings and the key mask (some keys masked mid-sequence)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.randn(n, D, generator=g) for n in lengths]
    t_max = max(text_lengths)
    text = torch.randn(len(lengths), t_max, D, generator=g)
    mask = torch.zeros(len(lengths), t_max, dtype=torch.bool)
    for i, t in enumerate(text_lengths):
        mask[i, :t] = True
    mask[0, 2] = False  # e.g. an image placeholder inside the prompt
    return images, text, mask


def reference_noise(gen, x, text, keys, eps=None):
    """Independent float64 computation for ONE sample: plain matrix algebra, explicit per-head loop."""
    p = {k: v.double() for k, v in gen.state_dict().items()}
    lin = lambda name, t: t @ p[f"{name}.weight"].T + p[f"{name}.bias"]  # noqa: E731
    x, text = x.double(), text[keys].double()
    q, k, v = lin("q_proj", x), lin("k_proj", text), lin("v_proj", text)
    dh = D // HEADS
    heads = []
    for h in range(HEADS):
        sl = slice(h * dh, (h + 1) * dh)
        w = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), dim=-1)
        heads.append(w @ v[:, sl])
    hidden = lin("o_proj", torch.cat(heads, dim=-1))
    mu = lin("mu_proj", hidden)
    log_sigma = lin("log_sigma_proj", hidden).clamp(gen.config.log_sigma_min, gen.config.log_sigma_max)
    noise = mu if eps is None else mu + log_sigma.exp() * eps.double()
    return mu, log_sigma, noise


def test_parameter_count_is_six_d_squared_plus_six_d():
    for d in (2048, 4096):
        with torch.device("meta"):
            gen = NoiseGenerator(NoiseGeneratorConfig(hidden_size=d, num_heads=8))
        assert sum(p.numel() for p in gen.parameters()) == 6 * d * d + 6 * d
    names = {n.split(".")[0] for n, _ in make_generator().named_parameters()}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "mu_proj", "log_sigma_proj"}


def test_matches_float64_reference_in_sample_and_mean_modes():
    gen = make_generator()
    images, text, mask = make_batch()
    eps = [torch.randn_like(x) for x in images]
    sampled = gen(images, text, mask, mode="sample", eps=eps)
    mean = gen(images, text, mask, mode="mean")
    for i, x in enumerate(images):
        mu, log_sigma, noise = reference_noise(gen, x, text[i], mask[i], eps[i])
        torch.testing.assert_close(sampled.mu[i].double(), mu, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sampled.log_sigma[i].double(), log_sigma, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sampled.image_embeds[i].double(), x.double() + noise, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mean.image_embeds[i].double(), x.double() + mu, atol=1e-5, rtol=1e-5)


def test_batch_result_equals_per_sample_results():
    gen = make_generator()
    images, text, mask = make_batch()
    batched = gen(images, text, mask, mode="mean")
    for i, (x, t) in enumerate(zip(images, (7, 4, 6))):  # each sample alone, without any padding
        alone = gen([x], text[i : i + 1, :t], mask[i : i + 1, :t], mode="mean")
        torch.testing.assert_close(batched.image_embeds[i], alone.image_embeds[0], atol=1e-5, rtol=1e-5)


def test_padding_and_other_samples_text_never_change_a_sample():
    gen = make_generator()
    images, text, mask = make_batch()
    before = gen(images, text, mask, mode="mean").image_embeds[0]
    changed = text.clone()
    changed[0][~mask[0]] = 1e3  # padding and the masked placeholder of sample 0
    changed[1:] = torch.randn_like(changed[1:])  # every other sample's text
    other_images = [images[0], torch.randn(4, D), torch.randn(9, D)]  # other samples' image counts too
    after = gen(other_images, changed, mask, mode="mean").image_embeds[0]
    assert torch.equal(before, after) or torch.allclose(before, after, atol=1e-6)


def test_eps_makes_sampling_exact_and_draws_differ_without_it():
    gen = make_generator()
    images, text, mask = make_batch()
    eps = [torch.randn_like(x) for x in images]
    a = gen(images, text, mask, mode="sample", eps=eps).image_embeds
    b = gen(images, text, mask, mode="sample", eps=eps).image_embeds
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = gen(images, text, mask, mode="sample").image_embeds
    assert not torch.allclose(a[0], c[0])


def test_mean_is_deterministic_and_off_returns_inputs_bit_for_bit():
    gen = make_generator()
    images, text, mask = make_batch()
    m1 = gen(images, text, mask, mode="mean").image_embeds
    m2 = gen(images, text, mask, mode="mean").image_embeds
    assert all(torch.equal(x, y) for x, y in zip(m1, m2))
    off = gen(images, text, mask, mode="off")
    assert off.noise is None and off.mode == "off"
    assert all(out is inp for out, inp in zip(off.image_embeds, images))


def test_mode_defaults_follow_training_flag_and_config():
    gen = make_generator(inference_mode="mean")
    gen.train()
    assert gen.resolve_mode(None) == "sample"
    gen.eval()
    assert gen.resolve_mode(None) == "mean"
    with pytest.raises(ValueError, match="Unknown noise mode"):
        gen.resolve_mode("sometimes")


def test_sample_noise_false_injects_mu_even_in_training():
    gen = make_generator(sample_noise=False).train()
    images, text, mask = make_batch()
    out = gen(images, text, mask)
    assert out.mode == "mean"
    torch.testing.assert_close(out.image_embeds[0], images[0] + out.mu[0])


def test_sample_without_keys_gets_zero_noise_not_nan():
    gen = make_generator()
    images, text, mask = make_batch()
    mask[2] = False
    out = gen(images, text, mask, mode="sample")
    assert torch.equal(out.image_embeds[2], images[2])
    assert torch.isfinite(out.image_embeds[0]).all()
    empty_text = gen(images, text[:, :0], mask[:, :0], mode="sample")
    assert all(torch.equal(o, x) for o, x in zip(empty_text.image_embeds, images))


def test_gradients_reach_every_parameter_and_not_frozen_owners():
    gen = make_generator().train()
    embed = torch.nn.Embedding(50, D).requires_grad_(False)  # frozen LLM embedding table
    projector = torch.nn.Linear(D, D).requires_grad_(False)  # frozen projector
    ids = torch.randint(0, 50, (2, 6))
    images = [projector(torch.randn(4, D)), projector(torch.randn(2, D))]
    out = gen(images, embed(ids), torch.ones(2, 6, dtype=torch.bool))
    sum(x.square().sum() for x in out.image_embeds).backward()
    for name, param in gen.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert embed.weight.grad is None and projector.weight.grad is None


def test_gradient_flows_to_trainable_image_features():
    gen = make_generator().train()
    images = [torch.randn(3, D, requires_grad=True)]
    out = gen(images, torch.randn(1, 4, D), torch.ones(1, 4, dtype=torch.bool))
    out.image_embeds[0].sum().backward()
    assert images[0].grad is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_without_nan_and_close_to_float32(dtype):
    gen = make_generator(log_sigma_max=20.0)
    images, text, mask = make_batch()
    ref = gen(images, text, mask, mode="mean")
    half = make_generator(log_sigma_max=20.0).to(dtype)
    out = half([x.to(dtype) for x in images], text.to(dtype), mask, mode="sample")
    assert all(torch.isfinite(x).all() and x.dtype == dtype for x in out.image_embeds)
    # With huge pre-activations exp is computed in float32 after the clamp, so sigma never overflows.
    assert all(torch.isfinite(s).all() and s.dtype == torch.float32 for s in out.log_sigma if s.numel())
    mean = half([x.to(dtype) for x in images], text.to(dtype), mask, mode="mean")
    torch.testing.assert_close(mean.image_embeds[0].float(), ref.image_embeds[0], atol=0.15, rtol=0.05)


def test_zero_init_starts_from_the_unchanged_base():
    gen = make_generator(init="zero").train()
    images, text, mask = make_batch()
    out = gen(images, text, mask)
    for o, x in zip(out.image_embeds, images):
        torch.testing.assert_close(o, x, atol=1e-3, rtol=0)
    assert torch.all(gen.mu_proj.weight == 0)


def test_mlp_kind_ignores_text():
    gen = make_generator(kind="mlp")
    assert {n.split(".")[0] for n, _ in gen.named_parameters()} == {"fc1", "fc2", "mu_proj", "log_sigma_proj"}
    images, text, mask = make_batch()
    a = gen(images, text, mask, mode="mean").image_embeds
    b = gen(images, torch.randn_like(text), mask, mode="mean").image_embeds
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_gaussian_kind_has_no_parameters_and_the_configured_std():
    gen = make_generator(kind="gaussian", gaussian_std=0.5)
    assert sum(p.numel() for p in gen.parameters()) == 0
    x = torch.zeros(20000, D)
    out = gen([x], torch.zeros(1, 1, D), torch.ones(1, 1, dtype=torch.bool), mode="sample")
    assert abs(out.image_embeds[0].std().item() - 0.5) < 0.01
    assert torch.equal(gen([x], torch.zeros(1, 1, D), torch.ones(1, 1, dtype=torch.bool), mode="mean").image_embeds[0], x)


def test_multiplicative_injection_scales_image_tokens():
    gen = make_generator(injection="mul")
    images, text, mask = make_batch()
    out = gen(images, text, mask, mode="mean")
    torch.testing.assert_close(out.image_embeds[0], images[0] * out.mu[0])
    zero = make_generator(injection="mul", init="zero")
    torch.testing.assert_close(zero(images, text, mask, mode="mean").image_embeds[0], images[0])


def test_attention_weights_sum_to_one_over_keys_and_skip_masked_positions():
    gen = make_generator()
    images, text, mask = make_batch()
    out = gen(images, text, mask, mode="mean", output_attentions=True)
    w = out.attentions
    assert w.shape == (3, HEADS, 5, text.shape[1])
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    assert torch.all(w[0, :, :, ~mask[0]] == 0)
    # The explicit-weights path and the fused path agree.
    torch.testing.assert_close(out.image_embeds[0], gen(images, text, mask, mode="mean").image_embeds[0], atol=1e-5, rtol=1e-5)


def test_bad_shapes_are_reported_with_the_sample():
    gen = make_generator()
    images, text, mask = make_batch()
    images[1] = torch.randn(2, D + 1)
    with pytest.raises(ValueError, match="Sample 1"):
        gen(images, text, mask)
    with pytest.raises(ValueError, match="disagree"):
        gen(images[:2], text, mask)
