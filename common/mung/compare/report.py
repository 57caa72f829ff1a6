"""The comparison's tables from its finished units: accuracy per question family and overall (mean ± std over
seeds) for the main methods and the ablations, trainable parameters, training time and memory relative to LoRA r32,
inference latency relative to the base; as Markdown (``tables.md``) and JSON (``results.json``).

Families no method learned (best mean not clearly above the better of chance and always giving the family's
most common answer) are named under the tables, never hidden in the overall figure.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any, Optional

from .lr_search import search_table
from .plan import ABLATION_OF, BASE, METHODS, PLANS, REFERENCE
from .stats import above, interval, paired_difference


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1; None for fewer than two values)."""
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def runs_of(results: list[dict], method: str, seeds: list[int], lr: Optional[float] = None) -> list[dict]:
    """The evaluated runs of ``method`` for ``seeds`` (a method that trains nothing has one run for all seeds);
    ``lr`` (a learning-rate search): only the runs at that rate."""
    trains = METHODS[method].trains
    return [r for r in results if r.get("method") == method and "eval" in r and (not trains or r["seed"] in seeds)
            and (lr is None or not trains or r.get("learning_rate") == lr)]


def accuracy_row(method: str, runs: list[dict], families: list[str]) -> dict[str, Any]:
    """Per family and overall (the mean of the families, so every family weighs the same) over ``runs``: mean,
    std and the 95% interval of ``stats.interval`` (over seeds; one run: binomial on its questions)."""
    row: dict[str, Any] = {"method": method, "runs": len(runs), "seeds": sorted(r["seed"] for r in runs)}
    for family in families:
        questions = runs[0]["eval"]["scores"].get("n_per_family", {}).get(family) if runs else None
        row[family] = interval([r["eval"]["scores"]["per_family"][family] for r in runs], questions)
    row["overall"] = interval([overall_of(r, families) for r in runs], runs[0]["eval"]["scores"].get("n") if runs else None)
    row["question_weighted"] = mean_std([r["eval"]["scores"]["overall"] for r in runs])
    rates = sorted({r["learning_rate"] for r in runs if r.get("learning_rate") is not None})
    row["learning_rate"] = rates[0] if len(rates) == 1 else None
    trained = [r["train"] for r in runs if "train" in r]
    if trained:
        row["trainable_params"] = trained[0]["trainable_params"]
        row["trainable_percent"] = trained[0]["trainable_percent"]
    return row


def overall_of(run: dict, families: list[str]) -> float:
    """A run's overall test accuracy: the mean of its families."""
    return statistics.fmean(run["eval"]["scores"]["per_family"][f] for f in families)


# Paired differences the report gives (A − B on the seeds both ran): what the generator adds to LoRA, the
# generator alone against LoRA, and NEFTune's random noise against the same tuning without it.
# What the noise adds (A - B on the same seeds): learned noise over none, the generator alone against LoRA, random
# noise over none, learned over random noise; and each ablation against the paper's generator.
PAIRS = (("MuNG+LoRA r32", "LoRA r32"), ("MuNG", "LoRA r32"), ("NEFTune+LoRA r32", "LoRA r32"),
         ("NEFTune (full FT)", "full FT"), ("MuNG+LoRA r32", "NEFTune+LoRA r32"),
         *((variant, "MuNG+LoRA r32") for variant in ("MLP generator", "multiplicative", "no sampling (mu only)",
                                                      "Gaussian noise", "no answer conditioning")))


def paired_rows(results: list[dict], families: list[str], seeds: list[int],
                chosen: Optional[dict[str, float]]) -> list[dict]:
    """Per pair of PAIRS whose both methods ran: the paired difference per family and overall."""
    rows = []
    for a, b in PAIRS:
        runs = {m: {r["seed"]: r for r in runs_of(results, m, seeds, (chosen or {}).get(m))} for m in (a, b)}
        if not runs[a] or not runs[b]:
            continue
        row: dict[str, Any] = {"a": a, "b": b}
        for family in families:
            row[family] = paired_difference({s: r["eval"]["scores"]["per_family"][family] for s, r in runs[a].items()},
                                            {s: r["eval"]["scores"]["per_family"][family] for s, r in runs[b].items()})
        row["overall"] = paired_difference({s: overall_of(r, families) for s, r in runs[a].items()},
                                           {s: overall_of(r, families) for s, r in runs[b].items()})
        rows.append(row)
    return rows


def base_white_row(base_unit: Optional[dict], base: dict[str, dict[str, float]]) -> Optional[dict]:
    """The stage-1 base on the white-background eval split: per family its accuracy, binomial 95% interval and
    whether it lies above the family's chance and most common answer (``base``: of the white questions asked)."""
    scores = (base_unit or {}).get("white_eval", {}).get("scores")
    if not scores:
        return None
    row: dict[str, Any] = {}
    for family, accuracy in scores["per_family"].items():
        cell = interval([accuracy], scores["n_per_family"][family])
        floor = floor_of(base[family]) if family in base else None
        row[family] = {**cell, "learnt": floor is not None and above(cell, floor)}
    return row


def floor_of(b: dict[str, float]) -> float:
    """The bar a family's interval must clear: the better of chance and always giving its most common answer."""
    return max(x for x in (b["chance"], b["majority"]) if not math.isnan(x))


def baselines(truth_rows: list[dict], chance: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per family (in the order of ``chance``, then of the truth file): chance (one over the candidate answers),
    the share of its most common answer, and its number of questions."""
    by_family: dict[str, Counter] = {family: Counter() for family in chance}
    for row in truth_rows:
        by_family.setdefault(row["family"], Counter())[row["answer"]] += 1
    out = {}
    for family, answers in by_family.items():
        if not answers:
            continue
        n = sum(answers.values())
        out[family] = {"chance": chance.get(family, math.nan), "majority": max(answers.values()) / n, "n": n}
    return out


def learned_families(rows: list[dict], base: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per family: the methods whose 95% interval lies above the family's bar (``floor_of``); learnt when any."""
    verdicts = {}
    for family, b in base.items():
        floor = floor_of(b)
        cells = [(r[family], r["method"]) for r in rows if r.get(family, {}).get("mean") is not None]
        best, best_method = max(((c["mean"], m) for c, m in cells), default=(None, None))
        learners = [m for c, m in cells if above(c, floor)]
        verdicts[family] = {"learned": bool(learners), "by": learners, "best": best, "best_method": best_method,
                            "threshold": floor}
    return verdicts


def training_cost_rows(results: list[dict], methods: list[str], seeds: list[int],
                       benchmark: Optional[dict]) -> list[dict]:
    """Per trained method: trainable parameters and share, seconds per step of its own runs (mean over seeds), and
    from the efficiency measurement the isolated step time and training memory; ratios to LoRA r32's."""
    rows = []
    for method in methods:
        trained = [r["train"] for r in results if r.get("method") == method and "train" in r and r["seed"] in seeds]
        if not trained:
            continue
        row = {"method": method, "trainable_params": trained[0]["trainable_params"],
               "trainable_percent": trained[0]["trainable_percent"],
               "seconds_per_step": mean_std([t["seconds_per_step"] for t in trained if t["seconds_per_step"]]),
               "peak_gpu_memory_bytes": mean_std([t["peak_gpu_memory_bytes"] for t in trained
                                                  if t.get("peak_gpu_memory_bytes")])}
        row.update(_benchmark_training(benchmark, method))
        rows.append(row)
    reference = next((r for r in rows if r["method"] == REFERENCE), None)
    for row in rows:
        row["time_vs_reference"] = _ratio(row["seconds_per_step"]["mean"], reference and reference["seconds_per_step"]["mean"])
        for key in ("bench_step_seconds", "bench_memory_bytes", "peak_gpu_memory_bytes"):
            mine = row.get(key, {}).get("mean") if isinstance(row.get(key), dict) else row.get(key)
            theirs = reference.get(key) if reference else None
            theirs = theirs.get("mean") if isinstance(theirs, dict) else theirs
            row[f"{key}_vs_reference"] = _ratio(mine, theirs)
    return rows


def _benchmark_training(benchmark: Optional[dict], method: str) -> dict[str, Any]:
    rows = (benchmark or {}).get("training_step", {}).get("rows", [])
    match = next((r for r in rows if r["contender"] == method), None)
    if match is None:
        return {}
    return {"bench_step_seconds": statistics.median(match["times"]), "bench_memory_bytes": match["memory"]}


def latency_rows(benchmark: Optional[dict]) -> list[dict]:
    """TTFT and TPOT medians of every contender of the inference benchmark, and their ratios to the base's."""
    results = (benchmark or {}).get("inference_latency", {}).get("results", {})
    if BASE not in results:
        return []
    base_ttft, base_tpot = statistics.median(results[BASE]["ttft"]), statistics.median(results[BASE]["gaps"])
    rows = []
    for name, r in results.items():
        ttft, tpot = statistics.median(r["ttft"]), statistics.median(r["gaps"])
        rows.append({"contender": name, "ttft_seconds": ttft, "tpot_seconds": tpot,
                     "ttft_vs_base": ttft / base_ttft, "tpot_vs_base": tpot / base_tpot})
    return rows


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def build_report(results: list[dict], plans: tuple[str, ...], methods: list[str], seeds: list[int],
                 base: dict[str, dict[str, float]], benchmark: Optional[dict],
                 chosen: Optional[dict[str, float]] = None, base_unit: Optional[dict] = None,
                 white_base: Optional[dict[str, dict[str, float]]] = None) -> dict[str, Any]:
    """Every table of ``plans`` as rows of numbers (None where a unit did not run). ``chosen`` (a learning-rate
    search: method -> rate) keeps each method's runs at its chosen rate; ``base_unit``: the stage-1 base's result
    (its accuracy on the white-background eval split), judged against ``white_base`` (the baselines of those
    questions; the test split's when not given)."""
    families = list(base)
    report: dict[str, Any] = {"families": families, "baselines": base, "seeds": seeds, "tables": {}}
    accuracy_tables = [plan for plan in plans if PLANS[plan]]
    for plan in accuracy_tables:
        names = [m for m in PLANS[plan] if m in methods]
        report["tables"][plan] = [accuracy_row(m, runs_of(results, m, seeds, (chosen or {}).get(m)), families)
                                  for m in names]
    if chosen is not None:
        report["lr_search"] = search_table(results, methods, chosen)
    shown_methods = [r for r in results if r.get("method") in methods]  # a pair needs both of its methods asked
    report["paired"] = paired_rows(shown_methods, families, seeds, chosen) if accuracy_tables else []
    report["base_white"] = base_white_row(base_unit, white_base or base)
    shown = [row for plan in accuracy_tables for row in report["tables"][plan]]
    report["learned"] = learned_families(shown, base) if shown else {}
    if "efficiency" in plans or "main" in plans:
        report["tables"]["training_cost"] = training_cost_rows(results, list(dict.fromkeys(
            m for plan in ("main", "ablation") for m in PLANS[plan])), seeds, benchmark)
        report["tables"]["latency"] = latency_rows(benchmark)
    if "ablation" in report["tables"]:
        ref = next((r for r in report["tables"]["ablation"] if r["method"] == ABLATION_OF), None)
        for row in report["tables"]["ablation"]:
            row["overall_vs_reference"] = _ratio_diff(row, ref)
    return report


def _ratio_diff(row: dict, ref: Optional[dict]) -> Optional[float]:
    if ref is None or row["overall"]["mean"] is None or ref["overall"]["mean"] is None:
        return None
    return row["overall"]["mean"] - ref["overall"]["mean"]
