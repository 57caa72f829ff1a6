"""Checks of a generator's initial tensors against the configured init, with tolerances from the sample size."""

import math

import torch

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "mu_proj", "log_sigma_proj")
Z = 6.0  # tolerance in standard errors of the estimate


def assert_normal(state: dict, layer: str, std: float) -> None:
    """Weights look like n i.i.d. N(0, std^2) draws (tolerances from n), biases are exactly zero."""
    weight, bias = state[f"{layer}.weight"].double(), state[f"{layer}.bias"]
    n = weight.numel()
    assert abs(weight.mean().item()) < Z * std / math.sqrt(n), f"{layer}: mean is not 0"
    # Standard error of the sample std of a normal sample: std / sqrt(2 n).
    assert abs(weight.std().item() - std) < Z * std / math.sqrt(2 * n), f"{layer}: std {weight.std():.5f} != {std}"
    # Normal, not uniform with that std (a uniform one never exceeds sqrt(3) std; n >= 4096 normal draws do).
    assert weight.abs().max() > 3 * std, f"{layer}: tails too short for a normal init"
    assert torch.count_nonzero(bias) == 0, f"{layer}: bias is not zero"


def assert_xavier(state: dict, layer: str) -> None:
    weight, bias = state[f"{layer}.weight"].double(), state[f"{layer}.bias"]
    fan_out, fan_in = weight.shape
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert weight.abs().max() <= limit + 1e-7, f"{layer} exceeds the xavier bound"
    assert weight.abs().max() > 0.99 * limit, f"{layer} does not fill the xavier range"
    uniform_std = limit / math.sqrt(3)
    # Standard error of the sample std of a uniform sample: std * sqrt(0.8 / (4 n)) (its kurtosis is 1.8).
    assert abs(weight.std().item() - uniform_std) < Z * uniform_std * math.sqrt(0.2 / weight.numel())
    assert torch.count_nonzero(bias) == 0
