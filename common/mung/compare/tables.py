"""The report (``report.build_report``) as Markdown: the accuracy tables (main, ablation), the training-cost table
and the latency table, each with the notes a reader needs (question counts, baselines, unlearned families)."""

from __future__ import annotations

from typing import Any, Optional

from .plan import ABLATION_OF, METHODS, REFERENCE

TITLES = {
    "main": "Accuracy: methods",
    "ablation": f"Accuracy: ablations (each changes one generator setting of {ABLATION_OF})",
    "training_cost": f"Training cost (relative to {REFERENCE})",
    "latency": "Inference latency (relative to the base)",
}


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def pct(cell: dict[str, Any]) -> str:
    """'71.7 ± 2.4' (percent; no ± for a single run; '–' for none)."""
    if cell["mean"] is None:
        return "–"
    text = f"{100 * cell['mean']:.1f}"
    return text + (f" ± {100 * cell['std']:.1f}" if cell["std"] is not None else "")


def number(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def accuracy_table(rows: list[dict], families: list[str], base: dict, ablation: bool) -> str:
    headers = ["method", *[f"{f} (n={base[f]['n']})" for f in families], "overall", "runs", "trainable"]
    if ablation:
        headers.insert(1, "what changes")
        headers.append(f"Δ overall vs {ABLATION_OF}")
    body = []
    for row in rows:
        cells = [row["method"], *[pct(row[f]) for f in families], pct(row["overall"]), str(row["runs"]),
                 number(row.get("trainable_percent"), ".2f") + ("%" if "trainable_percent" in row else "")]
        if ablation:
            cells.insert(1, METHODS[row["method"]].note or "–")
            diff = row.get("overall_vs_reference")
            cells.append("–" if diff is None else f"{100 * diff:+.1f}")
        body.append(cells)
    lead = [""] if ablation else []
    tail = ["", "", ""] + ([""] if ablation else [])
    body.append(["chance", *lead, *[f"{100 * base[f]['chance']:.1f}" for f in families], *tail])
    body.append(["most common answer", *lead, *[f"{100 * base[f]['majority']:.1f}" for f in families], *tail])
    return table(headers, body)


def training_cost_table(rows: list[dict]) -> str:
    headers = ["method", "trainable params", "share", "s / step (its runs)", f"time / {REFERENCE}",
               "step ms (benchmark)", f"time / {REFERENCE} (benchmark)", "train memory MiB (benchmark)",
               f"memory / {REFERENCE}", "peak GPU MiB", f"GPU memory / {REFERENCE}"]
    body = []
    for r in rows:
        gpu = r["peak_gpu_memory_bytes"]["mean"]
        body.append([
            r["method"], f"{r['trainable_params']:,}", f"{r['trainable_percent']:.2f}%",
            number(r["seconds_per_step"]["mean"], ".3f"), number(r["time_vs_reference"], ".2f"),
            number(r.get("bench_step_seconds") and 1e3 * r["bench_step_seconds"], ".1f"),
            number(r.get("bench_step_seconds_vs_reference"), ".2f"),
            number(r.get("bench_memory_bytes") and r["bench_memory_bytes"] / 2**20, ".1f"),
            number(r.get("bench_memory_bytes_vs_reference"), ".2f"),
            number(gpu and gpu / 2**20, ".0f"), number(r.get("peak_gpu_memory_bytes_vs_reference"), ".2f"),
        ])
    return table(headers, body)


def latency_table(rows: list[dict]) -> str:
    headers = ["contender", "TTFT ms", "TTFT / base", "TPOT ms", "TPOT / base"]
    body = [[r["contender"], f"{1e3 * r['ttft_seconds']:.2f}", f"{r['ttft_vs_base']:.3f}",
             f"{1e3 * r['tpot_seconds']:.2f}", f"{r['tpot_vs_base']:.3f}"] for r in rows]
    return table(headers, body)


def unlearned_note(report: dict) -> str:
    missed = {f: v for f, v in report["learned"].items() if not v["learned"]}
    if not missed:
        return "Every family is learnt by at least one method (best mean above chance and the most common answer " \
               "by more than two binomial standard errors)."
    parts = [f"{f} (best {100 * v['best']:.1f}% by {v['best_method']}, needs > {100 * v['threshold']:.1f}%)"
             for f, v in missed.items() if v["best"] is not None]
    return ("Not learnt by any method at this scale, so their columns compare nothing: " + "; ".join(parts) +
            ". The overall column still counts them.")


def render(report: dict[str, Any]) -> str:
    families, base, tables = report["families"], report["baselines"], report["tables"]
    sections = []
    for plan in ("main", "ablation"):
        if plan in tables:
            sections.append(f"## {TITLES[plan]}\n\n" + accuracy_table(tables[plan], families, base, plan == "ablation"))
    if report.get("learned"):
        sections.append(unlearned_note(report))
    if families:
        sections.append("Accuracy in % on " + ", ".join(f"{base[f]['n']} {f}" for f in families) + " questions; "
                        "overall = the mean of the families (each weighs the same); mean ± sample std over the seeds "
                        "(no ± for one run; the base trains nothing and is evaluated once).")
    if tables.get("training_cost"):
        sections.append(f"## {TITLES['training_cost']}\n\n" + training_cost_table(tables["training_cost"]))
    if tables.get("latency"):
        sections.append(f"## {TITLES['latency']}\n\n" + latency_table(tables["latency"]))
    return "\n\n".join(sections) + "\n"
