"""A PNG per accuracy table: one panel per question family and one for overall, a bar per method (mean over seeds,
error bar = the half-width of the 95% t-interval over seeds, none for one run), the family's chance and most-common-answer levels as dashed lines.

matplotlib is an optional dependency (``pip install -e .[compare]``); without it the charts are skipped with a
message and the tables are still written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional


def have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def draw(rows: list[dict], families: list[str], base: dict, title: str, path: Path) -> Optional[Path]:
    """Write the chart of one accuracy table to ``path``; None (nothing written) without matplotlib or rows."""
    if not rows or not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = [*families, "overall"]
    columns = 3
    fig, axes = plt.subplots(math.ceil(len(panels) / columns), columns, figsize=(4.2 * columns, 3.4 * 2),
                             squeeze=False, sharey=True)
    names = [row["method"] for row in rows]
    for ax, panel in zip(axes.flat, panels):
        means = [100 * (row[panel]["mean"] or 0.0) for row in rows]
        errors = [100 * (row[panel].get("half") or 0.0) if row[panel].get("std") is not None else 0.0
                  for row in rows]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color="#4c72b0")
        if panel in base:
            ax.axhline(100 * base[panel]["chance"], color="#c44e52", linestyle="--", linewidth=1, label="chance")
            ax.axhline(100 * base[panel]["majority"], color="#8c8c8c", linestyle=":", linewidth=1,
                       label="most common answer")
        label = f"{panel} (n={base[panel]['n']})" if panel in base else "overall (mean of families)"
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 105)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy %")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
