"""The comparison as data: the methods (name -> kind of tuning, LoRA rank, generator flags), the plans that group
them into the paper's tables, and the step budget every method gets.

A method says *what* is trained; the backbone's ``ComparisonRecipes`` says *how* (which recipe, which flags), so a
new method is one line here and works on every backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .recipes import TUNINGS

NEFTUNE_ALPHA = 5  # the NEFTune paper's most used alpha (it tries 5, 10, 15)
REFERENCE = "LoRA r32"  # training time and memory are reported relative to it (the paper's tables)
BASE = "base"  # inference latency is reported relative to it


@dataclass(frozen=True)
class Method:
    name: str
    tuning: Optional[str]  # one of recipes.TUNINGS; None: the start checkpoint evaluated as it is
    lora_rank: Optional[int] = None
    generator_flags: tuple[str, ...] = ()  # --ng_* flags (shared by every backbone's training)
    note: str = ""
    train_flags: tuple[str, ...] = ()  # other training flags every backbone's TrainingArguments take

    def __post_init__(self) -> None:
        if self.tuning is not None and self.tuning not in TUNINGS:
            raise ValueError(f"method {self.name!r}: tuning {self.tuning!r} is not one of {', '.join(TUNINGS)}.")
        uses_lora = self.tuning in ("lora", "dora", "noise_lora")
        if uses_lora != (self.lora_rank is not None):
            raise ValueError(f"method {self.name!r}: give a LoRA rank exactly when the tuning trains LoRA.")
        if self.generator_flags and self.tuning not in ("noise", "noise_lora"):
            raise ValueError(f"method {self.name!r}: generator flags need a tuning that trains the generator.")

    @property
    def trains(self) -> bool:
        return self.tuning is not None


MAIN = (
    Method(BASE, None, note="the start checkpoint as it is, no tuning"),
    Method("full FT", "full", note="every weight of the LLM and the projector / merger"),
    Method("LoRA r32", "lora", 32),
    Method("DoRA r32", "dora", 32),
    Method("MuNG", "noise", note="the noise generator alone; the MLLM frozen (the paper's Qwen2.5-VL setting)"),
    Method("MuNG+LoRA r32", "noise_lora", 32, note="generator and LoRA trained jointly (the paper's LLaVA-1.5 setting)"),
    Method("LoRA r128", "lora", 128),
    # NEFTune (transformers' Trainer, --neftune_noise_alpha): uniform noise on the token embeddings in training only,
    # nothing learnt. It has no trainable part of its own, so each row is a noise-free row of this table plus the
    # noise: full FT (the NEFTune paper's setting) and LoRA r32 (its usual use with adapters); the paired
    # differences compare each with its twin.
    Method("NEFTune (full FT)", "full", train_flags=("--neftune_noise_alpha", str(NEFTUNE_ALPHA)),
           note="full FT + NEFTune's random embedding noise"),
    Method("NEFTune+LoRA r32", "lora", 32, train_flags=("--neftune_noise_alpha", str(NEFTUNE_ALPHA)),
           note="LoRA r32 + NEFTune's random embedding noise"),
)
# Each ablation changes one setting of the generator of MuNG+LoRA r32 (a setting in which every variant, plain
# Gaussian noise too, has something to train); LoRA r32 beside them is the same run without any noise.
ABLATION_OF = "MuNG+LoRA r32"
ABLATIONS = (
    Method("MLP generator", "noise_lora", 32, ("--ng_kind", "mlp"), note="per-token MLP, ignores the text"),
    Method("multiplicative", "noise_lora", 32, ("--ng_injection", "mul"), note="X_V * noise instead of X_V + noise"),
    Method("no sampling (mu only)", "noise_lora", 32, ("--ng_sample_noise", "False"),
           note="cross-attention output mu injected without sampling"),
    Method("Gaussian noise", "noise_lora", 32, ("--ng_kind", "gaussian"), note="plain N(0, 0.1^2), nothing learnt"),
    Method("no answer conditioning", "noise_lora", 32, ("--ng_condition_on_answer", "False"),
           note="keys/values are the prompt only, also in training"),
)
METHODS = {method.name: method for method in MAIN + ABLATIONS}

# plan -> the methods whose accuracy its table shows, in row order
PLANS: dict[str, tuple[str, ...]] = {
    "main": tuple(m.name for m in MAIN),
    "ablation": (ABLATION_OF, *(m.name for m in ABLATIONS), REFERENCE),
    "efficiency": (),  # a measurement of its own (benchmarks/), beside the main methods' training runs
}
PLAN_CHOICES = (*PLANS, "all")


def plans_of(choice: str) -> tuple[str, ...]:
    if choice == "all":
        return tuple(PLANS)
    if choice not in PLANS:
        raise ValueError(f"--plan {choice!r} is not one of {', '.join(PLAN_CHOICES)}.")
    return (choice,)


def methods_of(plans: tuple[str, ...], only: Optional[list[str]] = None) -> list[Method]:
    """The methods to run for ``plans``, each once, in table order; ``only`` keeps just those names."""
    names: list[str] = []
    for plan in plans:
        names += [name for name in PLANS[plan] if name not in names]
    if only is not None:
        unknown = [name for name in only if name not in METHODS]
        if unknown:
            raise ValueError(f"--methods: unknown method(s) {unknown}; known: {', '.join(METHODS)}.")
        names = [name for name in names if name in only]
    return [METHODS[name] for name in names]


@dataclass(frozen=True)
class Budget:
    """What every method gets alike. ``steps`` None: the recipes' own (one epoch, their batch sizes); eval
    questions None: the whole eval split."""

    steps: Optional[int]
    batch: Optional[int]
    base_steps: Optional[int]  # the stage-1 base of the tiny world (None: the backbone's default)
    eval_per_family: Optional[int]


TINY = Budget(steps=300, batch=16, base_steps=None, eval_per_family=None)
TINY_FAST = Budget(steps=80, batch=16, base_steps=None, eval_per_family=None)
REAL = Budget(steps=None, batch=None, base_steps=None, eval_per_family=None)
