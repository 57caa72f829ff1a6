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
    split: str = "shift"  # tiny world: which setting (SPLITS)
    val_questions: Optional[str] = None  # the validation split a learning-rate search chooses on
    val_answers: Optional[str] = None
    lr_grids: Optional[dict[str, tuple[float, ...]]] = None  # --lr-search: tuning -> rates; None: no search

    def to_dict(self) -> dict[str, Any]:
        """Fields at their defaults are left out, so folders started before they existed still compare equal."""
        data = asdict(self)
        for key, default in OPTIONAL_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        if data.get("lr_grids"):
            data["lr_grids"] = {k: list(v) for k, v in data["lr_grids"].items()}
        return data


OPTIONAL_DEFAULTS = {"split": "shift", "val_questions": None, "val_answers": None, "lr_grids": None}
# Tiny-world settings: (manifest key prefix of the eval and validation files, TinyWorldSettings field naming the
# training file's manifest key). Version 4 worlds hold both; the distractor setting needs one.
SPLITS = {"shift": ("shift", "train_data"), "distractor": ("distractor", "distractor_train_data")}


def tiny_setup(backbone: str, spec: ComparisonRecipes, manifest: dict, world: str, budget: Budget,
               start: Optional[str], split: str = "shift", lr_grids: Optional[dict] = None) -> Setup:
    """The comparison on the tiny world: "shift" trains on its dark noisy split and evaluates on its dark noisy
    eval split; "distractor" on the several-shapes splits (world version 4). A search (``lr_grids``) chooses on
    the setting's validation split."""
    tiny = spec.tiny
    if split not in SPLITS:
        raise ValueError(f"--split {split!r} is not one of {', '.join(SPLITS)}.")
    prefix, train_field = SPLITS[split]
    train_key = getattr(tiny, train_field)
    needed = [train_key, f"{prefix}_eval_questions", *([f"{prefix}_val_questions"] if lr_grids is not None else [])]
    if any(key is None or key not in manifest for key in needed):
        raise ValueError(f"the tiny world at {world} (builder version {manifest.get('version')}) has no {split} "
                         f"{'validation / ' if lr_grids is not None else ''}eval splits for {backbone}; build a "
                         f"version 4 world (python -m tiny_world --out DIR).")
    return Setup(
        backbone=backbone, profile="tiny", budget=budget, start=start, start_projector=None, world=world,
        train_data=manifest[train_key], image_folder=manifest["image_folder"],
        eval_questions=manifest[f"{prefix}_eval_questions"], eval_answers=manifest[f"{prefix}_eval_answers"],
        learning_rates=dict(tiny.learning_rates), generator_lr=tiny.generator_lr, split=split,
        val_questions=manifest[f"{prefix}_val_questions"] if lr_grids is not None else None,
        val_answers=manifest[f"{prefix}_val_answers"] if lr_grids is not None else None,
        lr_grids=lr_grids,
    )


def check_or_store(out: Path, setup: Setup) -> None:
    """Store ``setup`` in a new comparison folder, or check it equals the one a folder was started with (see
    ``comparable``: a wider search grid is fine; the folder then records the wider one)."""
    path = out / SETUP_FILE
    wanted = setup.to_dict()
    if not path.is_file():
        write_json(path, wanted, indent=2)
        return
    stored = read_json(path, "the settings of the comparison in this folder")
    old, new = comparable(stored), comparable(wanted)
    changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    narrower = [t for t, rates in (stored.get("lr_grids") or {}).items()
                if wanted.get("lr_grids") and not set(rates) <= set(wanted["lr_grids"].get(t, ()))]
    if changed or narrower:
        details = "; ".join([f"{key}: {old.get(key)!r} then, {new.get(key)!r} now" for key in changed]
                            + [f"lr_grids[{t}]: {stored['lr_grids'][t]} then, {wanted['lr_grids'].get(t)} now "
                               "(a grid may only add rates)" for t in narrower])
        raise ValueError(
            f"{out} holds a comparison run with other settings ({details}). Its finished units would not compare "
            f"with new ones: pass another --out, or delete {path} and {out / 'units'} to start over."
        )
    if wanted != stored:
        write_json(path, wanted, indent=2)


def comparable(stored: dict[str, Any]) -> dict[str, Any]:
    """The settings two runs into one folder must share. A search (``lr_grids``) trains at its grids' rates, not
    at ``learning_rates``: of those only the generator's ratio to MuNG+LoRA's LoRA rate matters there (so a
    backbone's default rates may change under a finished search), and a grid may gain rates (each only adds its
    search units; the choice is made again over all of them)."""
    data = dict(stored)
    if data.get("lr_grids"):
        rates, generator = data.pop("learning_rates", None), data.pop("generator_lr", None)
        data["generator_ratio"] = (round(generator / rates["noise_lora"], 9)
                                   if rates and generator is not None else None)
        data["lr_grids"] = sorted(data["lr_grids"])  # the kinds searched; their rates are checked apart
    return data
