"""One unit of a comparison: a folder whose ``result.json`` (written last, atomically) marks it done.

A unit is the stage-1 base of the tiny world, one (method, seed) training + evaluation, or the efficiency
measurement. A rerun skips a unit whose marker exists and redoes one without (an interrupted training is started
again by its recipe, which leaves a finished run as it is).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..files import read_json, write_json

DONE_MARKER = "result.json"


def slug(name: str) -> str:
    """A folder name for a method name ("MuNG+LoRA r32" -> "mung-lora-r32")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class Unit:
    kind: str  # "base" | "method" | "efficiency"
    folder: Path
    method: Optional[str] = None
    seed: Optional[int] = None
    trains: bool = True  # a method unit that only evaluates (the base) costs much less: kept apart in estimates
    lr: Optional[float] = None  # --lr-search: the rate this unit trains at (None: the comparison's one rate)

    @property
    def cost_kind(self) -> str:
        return self.kind if self.kind != "method" else ("train" if self.trains else "eval")

    @property
    def label(self) -> str:
        if self.kind == "method":
            return f"{self.method}, seed {self.seed}" + (f", lr {self.lr:g}" if self.lr is not None else "")
        return {"base": "stage-1 base", "efficiency": "efficiency measurement"}[self.kind]

    @property
    def marker(self) -> Path:
        return self.folder / DONE_MARKER

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def is_done(self) -> bool:
        return self.marker.is_file()

    def result(self) -> dict[str, Any]:
        result = read_json(self.marker, f"the result of a finished unit ({self.label})")
        if not isinstance(result, dict):
            raise ValueError(f"{self.marker}: not a JSON object; delete it to run {self.label} again.")
        return result

    def finish(self, result: dict[str, Any]) -> None:
        write_json(self.marker, {"unit": self.kind, "method": self.method, "seed": self.seed, **result}, indent=2)


def method_unit(out: Path, method: str, seed: int, trains: bool = True, lr: Optional[float] = None) -> Unit:
    """``units/<method>/seed<N>``, or ``units/<method>/lr<rate>/seed<N>`` for a unit of a learning-rate search."""
    folder = out / "units" / slug(method)
    if lr is not None:
        folder = folder / f"lr{lr:g}"
    return Unit("method", folder / f"seed{seed}", method, seed, trains, lr)


def base_unit(out: Path) -> Unit:
    return Unit("base", out / "base")


def efficiency_unit(out: Path) -> Unit:
    return Unit("efficiency", out / "units" / "efficiency")


def finished_results(out: Path) -> list[dict[str, Any]]:
    """The results of every finished method unit under ``out`` (any method, any seed), in folder order."""
    results = []
    markers = [*(out / "units").glob(f"*/seed*/{DONE_MARKER}"), *(out / "units").glob(f"*/lr*/seed*/{DONE_MARKER}")]
    for marker in sorted(markers):
        try:
            results.append(json.loads(marker.read_text(encoding="utf-8")))
        except json.JSONDecodeError as err:
            raise ValueError(f"{marker}:{err.lineno}: not valid JSON ({err.msg}); delete it to rerun that unit.") from None
    return results
