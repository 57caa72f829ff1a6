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

from .plan import ABLATION_OF, BASE, METHODS, PLANS, REFERENCE


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1; None for fewer than two values)."""
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def runs_of(results: list[dict], method: str, seeds: list[int]) -> list[dict]:
    """The evaluated runs of ``method`` for ``seeds`` (a method that trains nothing has one run for all seeds)."""
    trains = METHODS[method].trains
    return [r for r in results if r.get("method") == method and "eval" in r and (not trains or r["seed"] in seeds)]


def accuracy_row(method: str, runs: list[dict], families: list[str]) -> dict[str, Any]:
    """Per family and overall (the mean of the families, so every family weighs the same) over ``runs``."""
    row: dict[str, Any] = {"method": method, "runs": len(runs), "seeds": sorted(r["seed"] for r in runs)}
    for family in families:
        row[family] = mean_std([r["eval"]["scores"]["per_family"][family] for r in runs])
    row["overall"] = mean_std([statistics.fmean(r["eval"]["scores"]["per_family"][f] for f in families) for r in runs])
    row["question_weighted"] = mean_std([r["eval"]["scores"]["overall"] for r in runs])
    trained = [r["train"] for r in runs if "train" in r]
    if trained:
        row["trainable_params"] = trained[0]["trainable_params"]
        row["trainable_percent"] = trained[0]["trainable_percent"]
    return row


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
    """Whether any method's mean beats the family's baseline (the better of chance and its most common answer) by
    more than two binomial standard errors of that baseline on the family's question count."""
    verdicts = {}
    for family, b in base.items():
        floor = max(x for x in (b["chance"], b["majority"]) if not math.isnan(x))
        margin = 2 * math.sqrt(floor * (1 - floor) / b["n"])
        means = [(r[family]["mean"], r["method"]) for r in rows if r.get(family, {}).get("mean") is not None]
        best, best_method = max(means) if means else (None, None)
        verdicts[family] = {"learned": best is not None and best > floor + margin, "best": best,
                            "best_method": best_method, "threshold": floor + margin}
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
                 base: dict[str, dict[str, float]], benchmark: Optional[dict]) -> dict[str, Any]:
    """Every table of ``plans`` as rows of numbers (None where a unit did not run)."""
    families = list(base)
    report: dict[str, Any] = {"families": families, "baselines": base, "seeds": seeds, "tables": {}}
    accuracy_tables = [plan for plan in plans if PLANS[plan]]
    for plan in accuracy_tables:
        names = [m for m in PLANS[plan] if m in methods]
        report["tables"][plan] = [accuracy_row(m, runs_of(results, m, seeds), families) for m in names]
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
