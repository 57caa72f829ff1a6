"""A faithful re-implementation of the authors' generator design, used only as a benchmark baseline.

What makes it the *reference design* (see DESIGN.md §2), reproduced on purpose:
- every image token of the batch attends through ONE dense boolean mask of shape [sum(image tokens), sum(text
  tokens)] built for the whole batch, so memory grows with the square of the batch size;
- the mask and the per-sample token counts are built in Python loops over the samples with `.item()` host
  synchronisations on every forward;
- keys are every non-image token, padding included (we only reproduce the cost, not the masking bug's effect
  on quality).
Its arithmetic otherwise matches ours (same six d×d linears, heads, clamp, reparameterisation).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ReferenceDesignGenerator(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int = 8):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        for name in ("q_proj", "k_proj", "v_proj", "o_proj", "mu_proj", "log_sigma_proj"):
            setattr(self, name, nn.Linear(hidden_size, hidden_size))

    def forward(self, image_embeds: torch.Tensor, image_counts: torch.Tensor, text_embeds: torch.Tensor,
                text_counts: torch.Tensor) -> torch.Tensor:
        """image_embeds [sum n_i, d] (flattened), text_embeds [sum t_i, d]; *_counts: per-sample token counts."""
        n_img, n_txt = image_embeds.shape[0], text_embeds.shape[0]
        mask = torch.zeros(n_img, n_txt, dtype=torch.bool, device=image_embeds.device)
        img_start = txt_start = 0
        for i in range(image_counts.shape[0]):  # per-sample Python loop with host syncs, as in the reference
            n_i, t_i = int(image_counts[i].item()), int(text_counts[i].item())
            mask[img_start : img_start + n_i, txt_start : txt_start + t_i] = True
            img_start += n_i
            txt_start += t_i
        heads, dh = self.num_heads, self.hidden_size // self.num_heads
        q = self.q_proj(image_embeds).view(n_img, heads, dh).transpose(0, 1)
        k = self.k_proj(text_embeds).view(n_txt, heads, dh).transpose(0, 1)
        v = self.v_proj(text_embeds).view(n_txt, heads, dh).transpose(0, 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask[None], float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(0, 1).reshape(n_img, self.hidden_size)
        hidden = self.o_proj(attended)
        mu, log_sigma = self.mu_proj(hidden), self.log_sigma_proj(hidden)
        noise = mu + log_sigma.exp() * torch.randn_like(mu)
        return image_embeds + noise
