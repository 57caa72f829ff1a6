"""``--lr-search``: every trained method at a small grid of learning rates, the rate chosen on the validation split.

How it spends the budget: each method trains once per rate of its kind of tuning's grid with seed 0 (the search
units); the rate whose run scores best on the validation split (overall: the mean of the families) is chosen; the
other seeds then train at that rate only. So a method costs ``len(grid) + seeds - 1`` runs, and its seed-0 row is
the search run at the chosen rate. Ties go to the lower rate. The test split never takes part in the choice (every
unit answers it too, so the test accuracy at the chosen rate is there without training again).

Default grids (tiny world, ``DEFAULT_TINY_GRIDS``): four rates per kind of tuning spanning 100x around the rates
the comparison used before the search existed: three at first, then one higher each, because with three every
Qwen method and LLaVA's generator alone and full FT chose the top one (docs/results.md); a superset, so folders
searched on three resume. A backbone may replace a kind's grid (``TinyWorldSettings.lr_grids``);
``--lr-grid TUNING=R1,R2,...`` replaces one again.
MuNG+LoRA's generator follows its LoRA rate at the backbone's fixed ratio (``generator_lr`` / the LoRA rate of
``learning_rates``: 1 for LLaVA, 10 for Qwen), so one grid searches both.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from .recipes import TUNINGS

DEFAULT_TINY_GRIDS: dict[str, tuple[float, ...]] = {
    "full": (1e-4, 5e-4, 3e-3, 1e-2),
    "lora": (3e-4, 2e-3, 1e-2, 3e-2),
    "dora": (3e-4, 2e-3, 1e-2, 3e-2),
    "noise": (1e-3, 5e-3, 3e-2, 1e-1),
    "noise_lora": (3e-4, 2e-3, 1e-2, 3e-2),
}
SEARCH_SEED = 0
TIE_DIGITS = 9  # validation scores equal to this many digits are a tie


def tiny_grids(backbone_grids: Optional[Mapping[str, tuple[float, ...]]]) -> dict[str, tuple[float, ...]]:
    """The tiny world's grids for a backbone: DEFAULT_TINY_GRIDS with the kinds the backbone replaces."""
    return {**DEFAULT_TINY_GRIDS, **{k: tuple(v) for k, v in (backbone_grids or {}).items()}}


def parse_grids(items: Optional[Iterable[str]], defaults: Optional[Mapping[str, tuple[float, ...]]]
                ) -> dict[str, tuple[float, ...]]:
    """``["lora=1e-4,1e-3", ...]`` over ``defaults``; a one-line error names a bad item."""
    grids = {k: tuple(v) for k, v in (defaults or {}).items()}
    for item in items or ():
        tuning, _, rates = item.partition("=")
        if tuning not in TUNINGS or not rates:
            raise ValueError(f"--lr-grid {item!r}: give TUNING=R1,R2,... with TUNING one of {', '.join(TUNINGS)}.")
        try:
            values = tuple(float(r) for r in rates.split(","))
        except ValueError:
            raise ValueError(f"--lr-grid {item!r}: the rates must be numbers separated by commas.") from None
        if not values or any(v <= 0 for v in values) or len(set(values)) != len(values):
            raise ValueError(f"--lr-grid {item!r}: give distinct positive rates.")
        grids[tuning] = tuple(sorted(values))
    return grids


def choose(search_runs: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The search run with the best validation overall (ties: the lowest rate); None without any."""
    scored = [r for r in search_runs if r.get("val")]
    if not scored:
        return None
    # Rounded: a mean of family accuracies is a ratio of counts whose float sum depends on the order of its terms
    # (0.45333333333333325 against ...37 for the same 136 of 300), and a tie must go to the lower rate.
    return min(scored, key=lambda r: (-round(r["val"]["overall"], TIE_DIGITS), r["learning_rate"]))


def validation_overall(result: dict[str, Any], families: list[str]) -> float:
    """The mean over ``families`` of a unit's validation accuracy (each family weighs the same)."""
    per_family = result["scores"]["per_family"]
    present = [f for f in families if f in per_family] or list(per_family)
    return sum(per_family[f] for f in present) / len(present)


def search_table(results: list[dict[str, Any]], methods: list[str], chosen: Mapping[str, float]) -> list[dict]:
    """Per method: the validation overall of each searched rate (seed 0: the runs the choice saw) and the chosen
    rate."""
    rows = []
    for method in methods:
        runs = sorted((r for r in results if r.get("method") == method and r.get("search")
                       and r.get("seed") == SEARCH_SEED),
                      key=lambda r: r["learning_rate"])
        if runs:
            rows.append({"method": method, "chosen": chosen.get(method),
                         "rates": [{"lr": r["learning_rate"], "val_overall": r["val"]["overall"]} for r in runs]})
    return rows
