"""The noise path as it was before it became sync-free (commit 13fc2bd), kept frozen as the reference the
equivalence tests compare the new path with bit for bit: the generator's per-sample list call (pad, attend, draw
``randn(B, n_max, d)``, unpad), the generic backbone's per-row boolean gather and masked scatter, and Qwen2.5-VL's
split of the merger output with a host read of the counts.

It reads the generator's own Linear layers, so the same weights serve both paths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from noise_generator import NoiseOutput


def _attend(gen, queries, text, key_mask):
    bsz, n_q, d = queries.shape
    heads = gen.config.num_heads
    head_dim = d // heads
    has_key = key_mask.any(dim=-1)
    if text.shape[1] == 0:
        return queries.new_zeros(bsz, n_q, d), has_key

    def split_heads(x):
        return x.view(bsz, -1, heads, head_dim).transpose(1, 2)

    q, k, v = split_heads(gen.q_proj(queries)), split_heads(gen.k_proj(text)), split_heads(gen.v_proj(text))
    safe_mask = (key_mask | ~has_key[:, None])[:, None, None, :]
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask)
    return gen.o_proj(attended.transpose(1, 2).reshape(bsz, n_q, d)), has_key


def _statistics(gen, queries, text_embeds, text_mask):
    cfg = gen.config
    if cfg.kind == "gaussian":
        mu = queries.new_zeros(queries.shape, dtype=torch.float32)
        return mu, torch.full_like(mu, math.log(cfg.gaussian_std) if cfg.gaussian_std > 0 else -math.inf), None
    has_key = None
    if cfg.kind == "cross_attn":
        hidden, has_key = _attend(gen, queries, text_embeds.to(queries.dtype), text_mask.bool())
    else:
        hidden = gen.fc2(F.gelu(gen.fc1(queries)))
    mu = gen.mu_proj(hidden).float()
    log_sigma = gen.log_sigma_proj(hidden).float().clamp(cfg.log_sigma_min, cfg.log_sigma_max)
    return mu, log_sigma, has_key


def generator_call(gen, image_embeds, text_embeds, text_mask, mode=None, eps=None) -> NoiseOutput:
    """The old ``NoiseGenerator.forward`` (list form, no attention weights)."""
    image_embeds = list(image_embeds)
    mode = gen.resolve_mode(mode)
    if mode == "off" or not image_embeds:
        return NoiseOutput(image_embeds=image_embeds, mode="off")
    lengths = [x.shape[0] for x in image_embeds]
    out_dtype = image_embeds[0].dtype
    compute_dtype = next(gen.parameters()).dtype if any(True for _ in gen.parameters()) else out_dtype
    queries = pad_sequence([x.to(compute_dtype) for x in image_embeds], batch_first=True)
    mu, log_sigma, has_key = _statistics(gen, queries, text_embeds, text_mask)
    if mode == "mean":
        noise = mu
    else:
        if eps is None:
            draws = torch.randn(mu.shape, device=mu.device, dtype=torch.float32)
        else:
            draws = pad_sequence([e.float() for e in eps], batch_first=True) if mu.shape[1] else mu
        noise = gen.config.gaussian_std * draws if gen.config.kind == "gaussian" else mu + log_sigma.exp() * draws
    base = queries.float() if compute_dtype == out_dtype else pad_sequence([x.float() for x in image_embeds], True)
    if has_key is not None:
        neutral = 1.0 if gen.config.injection == "mul" else 0.0
        noise = torch.where(has_key[:, None, None], noise, torch.full_like(noise, neutral))
    noised = base * noise if gen.config.injection == "mul" else base + noise

    def unpad(padded):
        return [padded[i, :n] for i, n in enumerate(lengths)]

    return NoiseOutput(image_embeds=unpad(noised.to(out_dtype)), noise=unpad(noise), mu=unpad(mu),
                       log_sigma=unpad(log_sigma), mode=mode)


def attach_noised_embeds(attachment, embeds, queries, call, mode):
    """The old ``NoiseAttachment.noised_embeds``: per-row boolean gather, list call, masked scatter."""
    keys = attachment.key_mask(call, embeds)
    per_sample = [embeds[row][queries[row]] for row in range(embeds.shape[0])]
    output = generator_call(attachment.generator, per_sample, embeds, keys, mode=mode)
    noised = torch.cat(output.image_embeds, dim=0).to(embeds.dtype)
    return embeds.masked_scatter(queries[..., None].expand_as(embeds), noised), output


def attach_noised_deepstack(attachment, kwargs, embeds, queries, output):
    """The old ``NoiseAttachment.noised_deepstack`` (on the list output above)."""
    multiply = attachment.generator.config.injection == "mul"
    noise = torch.cat(output.noise, dim=0).to(embeds.dtype)
    rows = queries[..., None].expand_as(embeds)
    full = torch.full_like(embeds, 1.0 if multiply else 0.0).masked_scatter(rows, noise)
    change = full[kwargs["visual_pos_masks"].to(embeds.device)]
    copies = kwargs["deepstack_visual_embeds"]
    return [copy * change.to(copy.dtype) if multiply else copy + change.to(copy.dtype) for copy in copies]


def qwen_noised_features(model, image_features, image_mask, embeds, key_mask, draws, noise_mode):
    """The old tail of ``Qwen2_5_VLNoiseModel.noised_inputs``: split by host counts, repeat, list call, concatenate."""
    counts = image_mask.sum(dim=-1).tolist()
    per_sample = draws.repeat_list(list(image_features.split(counts)))
    noised = generator_call(model.noise_generator, per_sample, embeds, key_mask, mode=noise_mode).image_embeds
    return torch.cat(noised, dim=0)
