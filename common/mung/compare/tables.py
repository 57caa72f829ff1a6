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


def pct(cell: dict[str, Any], signed: bool = False) -> str:
    """'71.7 ± 4.1' (percent; ± the half-width of the 95% t-interval over seeds; no ± for a single run; '–' for
    none)."""
    if cell["mean"] is None:
        return "–"
    text = f"{100 * cell['mean']:{'+' if signed else ''}.1f}"
    return text + (f" ± {100 * cell['half']:.1f}" if cell.get("std") is not None and cell.get("half") is not None
                   else "")


def number(value: Optional[float], fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def accuracy_table(rows: list[dict], families: list[str], base: dict, ablation: bool) -> str:
    with_lr = any(row.get("learning_rate") is not None for row in rows)
    headers = ["method", *[f"{f} (n={base[f]['n']})" for f in families], "overall", "runs", "trainable",
               *(["lr"] if with_lr else [])]
    if ablation:
        headers.insert(1, "what changes")
        headers.append(f"Δ overall vs {ABLATION_OF}")
    body = []
    for row in rows:
        cells = [row["method"], *[pct(row[f]) for f in families], pct(row["overall"]), str(row["runs"]),
                 number(row.get("trainable_percent"), ".2f") + ("%" if "trainable_percent" in row else ""),
                 *([number(row.get("learning_rate"), "g")] if with_lr else [])]
        if ablation:
            cells.insert(1, METHODS[row["method"]].note or "–")
            diff = row.get("overall_vs_reference")
            cells.append("–" if diff is None else f"{100 * diff:+.1f}")
        body.append(cells)
    lead = [""] if ablation else []
    tail = ["", "", ""] + ([""] if ablation else []) + ([""] if with_lr else [])
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


def search_table(rows: list[dict]) -> str:
    """Validation overall (seed 0) of each searched rate per method; the chosen one in bold."""
    rates = sorted({cell["lr"] for row in rows for cell in row["rates"]})
    body = []
    for row in rows:
        by_rate = {cell["lr"]: cell["val_overall"] for cell in row["rates"]}
        cells = []
        for lr in rates:
            text = "" if lr not in by_rate else f"{100 * by_rate[lr]:.1f}"
            cells.append(f"**{text}**" if lr == row["chosen"] and text else text)
        body.append([row["method"], *cells, number(row["chosen"], "g")])
    return table(["method", *[f"lr {lr:g}" for lr in rates], "chosen"], body)


def latency_table(rows: list[dict]) -> str:
    headers = ["contender", "TTFT ms", "TTFT / base", "TPOT ms", "TPOT / base"]
    body = [[r["contender"], f"{1e3 * r['ttft_seconds']:.2f}", f"{r['ttft_vs_base']:.3f}",
             f"{1e3 * r['tpot_seconds']:.2f}", f"{r['tpot_vs_base']:.3f}"] for r in rows]
    return table(headers, body)


def unlearned_note(report: dict) -> str:
    verdicts = report["learned"]
    learnt = [f"{f} ({', '.join(v['by'])})" for f, v in verdicts.items() if v["learned"]]
    missed = [f"{f} (best {100 * v['best']:.1f}% by {v['best_method']}, bar {100 * v['threshold']:.1f}%)"
              for f, v in verdicts.items() if not v["learned"] and v["best"] is not None]
    text = ("Learnt (95% interval above the better of chance and the most common answer): "
            + ("; ".join(learnt) if learnt else "no family by any method") + ".")
    if missed:
        text += (" Not learnt by any method, so their columns compare nothing: " + "; ".join(missed)
                 + ". The overall column still counts them.")
    return text


def paired_table(rows: list[dict], families: list[str]) -> str:
    body = [[f"{r['a']} − {r['b']}", *[pct(r[f], signed=True) for f in [*families, "overall"]],
             str(len(r["overall"]["seeds"])), _verdict(r["overall"])] for r in rows]
    return table(["difference", *families, "overall", "seeds", "overall verdict"], body)


def _verdict(cell: dict) -> str:
    if cell.get("low") is None:
        return "no interval (one seed)"
    if cell["low"] > 0:
        return "A better"
    if cell["high"] < 0:
        return "B better"
    return "no difference shown"


def base_white_table(row: dict) -> str:
    families = list(row)
    cells = [f"{100 * row[f]['mean']:.1f} [{100 * row[f]['low']:.1f}, {100 * row[f]['high']:.1f}]"
             + (" ✓" if row[f]["learnt"] else "") for f in families]
    return table(["", *families], [["stage-1 base, white backgrounds", *cells]])


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
                        "overall = the mean of the families (each weighs the same); mean ± the half-width of the "
                        "95% t-interval over the seeds (t(0.975, n−1)·s/√n; no ± for one run, whose 'learnt' "
                        "verdict uses the binomial (Wilson) interval of its questions instead; the base trains "
                        "nothing and is evaluated once).")
    if report.get("paired"):
        sections.append("## Paired differences (same seeds, A − B, points)\n\n" + paired_table(report["paired"], families)
                        + "\n\nEach cell: mean of the per-seed differences ± the half-width of its 95% t-interval; "
                        "'A better' / 'B better' only when the overall interval excludes 0.")
    if report.get("base_white"):
        sections.append("## The stage-1 base where it was trained (white backgrounds)\n\n"
                        + base_white_table(report["base_white"]) + "\n\nAccuracy % [binomial (Wilson) 95% "
                        "interval]; ✓: the interval lies above chance and the most common answer's share (of these "
                        "white questions).")
    if report.get("lr_search"):
        sections.append("## Learning rates chosen on the validation split\n\n" + search_table(report["lr_search"])
                        + "\n\nValidation accuracy (overall, %) of each method's seed-0 run at each rate of its "
                        "kind of tuning's grid; the chosen rate (best validation, ties to the lower rate) in bold. "
                        "The accuracy tables show test accuracy at the chosen rate.")
    if tables.get("training_cost"):
        sections.append(f"## {TITLES['training_cost']}\n\n" + training_cost_table(tables["training_cost"]))
    if tables.get("latency"):
        sections.append(f"## {TITLES['latency']}\n\n" + latency_table(tables["latency"]))
    return "\n\n".join(sections) + "\n"
