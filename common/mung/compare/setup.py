"""What a comparison is run on and with: the settings that change its results, stored in ``OUT/compare.json``.

A rerun into the same folder must ask for the same settings (more seeds, plans or methods are fine: they only add
units); otherwise its finished units would be mixed with units trained differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..files import read_json, write_json
from .plan import Budget
from .recipes import ComparisonRecipes

SETUP_FILE = "compare.json"


@dataclass(frozen=True)
class Setup:
    backbone: str
    profile: str  # "tiny": the tiny world, learning rates sized for it; "real": the recipes' own settings
    budget: Budget
    start: Optional[str]  # the checkpoint every method starts from; None: the tiny world's stage-1 base unit
    start_projector: Optional[str]  # a pretrained projector loaded onto ``start`` when training (LLaVA)
    world: Optional[str]  # the tiny world folder
    train_data: str
    image_folder: Optional[str]
    eval_questions: Optional[str]  # None: no evaluation here (the benchmark scripts do it afterwards)
    eval_answers: Optional[str]
    learning_rates: Optional[dict[str, float]]  # tuning -> LR; None: each recipe's default
    generator_lr: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tiny_setup(backbone: str, spec: ComparisonRecipes, manifest: dict, world: str, budget: Budget,
               start: Optional[str]) -> Setup:
    """The comparison on the tiny world: train on its dark noisy split, evaluate on its dark noisy eval split."""
    tiny = spec.tiny
    return Setup(
        backbone=backbone, profile="tiny", budget=budget, start=start, start_projector=None, world=world,
        train_data=manifest[tiny.train_data], image_folder=manifest["image_folder"],
        eval_questions=manifest["shift_eval_questions"], eval_answers=manifest["shift_eval_answers"],
        learning_rates=dict(tiny.learning_rates), generator_lr=tiny.generator_lr,
    )


def check_or_store(out: Path, setup: Setup) -> None:
    """Store ``setup`` in a new comparison folder, or check it equals the one a folder was started with."""
    path = out / SETUP_FILE
    wanted = setup.to_dict()
    if not path.is_file():
        write_json(path, wanted, indent=2)
        return
    stored = read_json(path, "the settings of the comparison in this folder")
    changed = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
    if changed:
        details = "; ".join(f"{key}: {stored.get(key)!r} then, {wanted.get(key)!r} now" for key in changed)
        raise ValueError(
            f"{out} holds a comparison run with other settings ({details}). Its finished units would not compare "
            f"with new ones: pass another --out, or delete {path} and {out / 'units'} to start over."
        )
