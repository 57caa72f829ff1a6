"""What a backbone declares so that ``mung.compare`` can train and evaluate it (``Backbone.comparison``).

Data only: which recipe in ``scripts/`` trains each kind of tuning, what the comparison adds to it, how LoRA's alpha
follows its rank, which module answers a question file, and the settings of the tiny world. The runner never
branches on a backbone's name; a backbone without ``comparison`` cannot be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

# The kinds of tuning a method can ask for: "base" is the stage-1 full training of a tiny-world base model.
TUNINGS = ("full", "lora", "dora", "noise", "noise_lora")


@dataclass(frozen=True)
class Recipe:
    """A recipe script (relative to the repository root), the environment it needs besides the runner's, and
    flags appended to its command line (through its ``EXTRA_ARGS``)."""

    script: str
    env: Mapping[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TinyWorldSettings:
    """How a backbone runs on the tiny world (``python -m tiny_world``): manifest keys, the stage-1 base's budget,
    and one learning rate per tuning (the recipes' defaults are the papers', sized for 7B / 3B models)."""

    start_model: str  # manifest key of the random model the stage-1 base starts from
    base_data: str  # manifest key of the stage-1 training file (white backgrounds)
    train_data: str  # manifest key of the comparison's training file (dark noisy backgrounds)
    env: Mapping[str, str]  # recipe variable -> manifest key (e.g. the vision tower)
    base_steps: int
    base_lr: float
    connector_lr: float  # the projector's / merger's own rate in the stage-1 base
    connector_lr_flag: str
    learning_rates: Mapping[str, float]  # tuning -> the recipe's LR (the generator's for "noise")
    generator_lr: float  # NG_LR when the generator trains beside LoRA
    eval_batch: int
    distractor_train_data: Optional[str] = None  # manifest key of the distractor setting's training file (v4)
    # --lr-search: tuning -> rates, replacing those kinds of mung.compare.lr_search.DEFAULT_TINY_GRIDS
    lr_grids: Optional[Mapping[str, tuple[float, ...]]] = None
    # The command whose --lr-search chose ``learning_rates`` (docs/results.md has its tables); the quickstart
    # trains at these rates and says so.
    rates_chosen_by: str = ""


@dataclass(frozen=True)
class ComparisonRecipes:
    recipes: Mapping[str, Recipe]  # "base" and every tuning of TUNINGS
    lora_alpha_per_rank: float  # the recipes' convention: alpha = rank x this
    eval_module: str  # ``python -m`` module that answers a question jsonl (mung.eval.model_vqa_loader's flags)
    tiny: TinyWorldSettings
    eval_flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # set for every recipe
    start_projector_flag: Optional[str] = None  # training flag that loads a pretrained projector onto the start

    def __post_init__(self) -> None:
        missing = [t for t in ("base", *TUNINGS) if t not in self.recipes]
        if missing:
            raise ValueError(f"ComparisonRecipes: no recipe for {', '.join(missing)}; give one per tuning.")
        missing = [t for t in TUNINGS if t not in self.tiny.learning_rates]
        if missing:
            raise ValueError(f"TinyWorldSettings: no learning rate for {', '.join(missing)}.")
