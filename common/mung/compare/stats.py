"""The comparison's statistics: 95% intervals of a mean over seeds and of a paired difference, without scipy.

- A cell (one method, one family) over n >= 2 seeds: mean ± t(0.975, n - 1) · s / √n, s the sample standard
  deviation (n - 1): the Student t-interval of the mean over training seeds. The eval questions are the same for
  every seed, so it is the spread of training, not of the question sample.
- One run (n = 1) has no spread over seeds: its interval is the binomial one of its accuracy p on its q questions,
  Wilson's score interval (c ± h with c = (p + z²/2q) / (1 + z²/q), h = z / (1 + z²/q) · √(p (1 - p)/q + z²/4q²),
  z = 1.96; the question sample's spread only). Unlike p ± z·√(p (1 - p)/q) it stays inside [0, 1] and does not
  shrink to a point at 0% or 100% (60 of 60 right: 94.0-100%, not 100-100%).
- A paired difference (method A − method B, seeds both ran): the t-interval of the per-seed differences, so what
  the seeds share (data order, initialisation of the noise-free parts) cancels.
- "Learnt": a family counts as learnt by a method only when the lower end of its interval lies above chance and
  above the share of the family's most common answer.

The t quantile is computed here (``t_quantile``): the Student density integrated by Simpson's rule and inverted by
bisection, exact to ~1e-6 for any degrees of freedom (t(0.975, 1) = 12.706, t(0.975, 2) = 4.303).
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import Any, Mapping, Optional

LEVEL = 0.95
Z_95 = 1.959964  # the normal 97.5% quantile, for the one-run binomial interval


def _t_density(t: float, df: int) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c) * (1 + t * t / df) ** (-(df + 1) / 2)


def _t_cdf(x: float, df: int, intervals: int = 2000) -> float:
    """P(T <= x) for x >= 0: 1/2 plus Simpson's rule of the density over [0, x]."""
    h = x / intervals
    total = _t_density(0.0, df) + _t_density(x, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, intervals))
    return 0.5 + total * h / 3


@lru_cache(maxsize=None)
def t_quantile(p: float, df: int) -> float:
    """The p quantile (p > 1/2) of Student's t with ``df`` degrees of freedom."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 1/2 < p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def interval(values: list[float], questions: Optional[int] = None) -> dict[str, Any]:
    """Mean, sample std and the 95% interval (``half``-width, ``low``, ``high``) of ``values`` (seeds): a
    t-interval for two or more; for one value the binomial interval on ``questions`` questions (None without)."""
    if not values:
        return {"mean": None, "std": None, "n": 0, "half": None, "low": None, "high": None}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    if std is not None:
        half = t_quantile((1 + LEVEL) / 2, len(values) - 1) * std / math.sqrt(len(values))
    elif questions:
        return {"mean": mean, "std": None, "n": 1, **wilson(mean, questions)}
    else:
        half = None
    low, high = (None, None) if half is None else (mean - half, mean + half)
    return {"mean": mean, "std": std, "n": len(values), "half": half, "low": low, "high": high}


def wilson(p: float, questions: int) -> dict[str, float]:
    """Wilson's 95% score interval of a proportion ``p`` of ``questions`` (half-width about its own centre)."""
    z2 = Z_95 * Z_95 / questions
    centre = (p + z2 / 2) / (1 + z2)
    half = Z_95 / (1 + z2) * math.sqrt(p * (1 - p) / questions + z2 / (4 * questions))
    return {"half": half, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """The t-interval of a[seed] - b[seed] over the seeds both have (``seeds`` lists them)."""
    seeds = sorted(set(a) & set(b))
    result = interval([a[s] - b[s] for s in seeds])
    result["seeds"] = seeds
    return result


EPSILON = 1e-9  # accuracies are ratios of small counts: a mean of three 0.4s is 0.4000000000000001, not above 0.4


def above(cell: Mapping[str, Any], floor: float) -> bool:
    """Whether the cell's interval lies above ``floor`` (no interval: not shown to be)."""
    return cell.get("low") is not None and cell["low"] > floor + EPSILON
