"""The commands a comparison runs: a backbone's recipe for each training, its question-answering module for each
evaluation, and the benchmark scripts for the efficiency measurement. Built from data (the method, the backbone's
``ComparisonRecipes``, the ``Setup``); run from the repository root as subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .plan import Method
from .recipes import ComparisonRecipes, Recipe
from .setup import Setup

MAX_NEW_TOKENS = 8  # every tiny-world answer is one word
NO_INTERMEDIATE_SAVES = 10**6  # tiny runs keep only their final folder


def _flags(recipe: Recipe, method: Method, setup: Setup, spec: ComparisonRecipes, seed: int) -> list[str]:
    flags = ["--seed", str(seed), "--data_seed", str(seed), *recipe.flags, *method.generator_flags,
             *method.train_flags]
    if setup.start_projector:
        flags += [spec.start_projector_flag, setup.start_projector]
    if setup.profile == "real" and _has_gpu():
        flags += ["--skip_memory_metrics", "False"]  # the Trainer's own peak GPU memory, in trainer_state.json
    return flags


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def training_env(spec: ComparisonRecipes, setup: Setup, method: Method, seed: int, start: str, output_dir: Path,
                 manifest: Optional[dict], lr: Optional[float] = None) -> dict[str, str]:
    """The recipe's environment for training ``method`` with ``seed`` from ``start`` into ``output_dir``; ``lr``
    (a learning-rate search) replaces the tuning's rate, and MuNG+LoRA's generator rate follows it at the ratio
    the comparison's own rates have."""
    recipe = spec.recipes[method.tuning]
    env = {**spec.env, **recipe.env, "MODEL_PATH": str(start), "DATA_PATH": setup.train_data,
           "OUTPUT_DIR": str(output_dir)}
    if setup.image_folder:
        env["IMAGE_FOLDER"] = setup.image_folder
    if method.lora_rank is not None:
        env["LORA_R"] = str(method.lora_rank)
        env["LORA_ALPHA"] = str(round(method.lora_rank * spec.lora_alpha_per_rank))
    rate = learning_rate(setup, method, lr)
    if rate is not None:
        env["LR"] = str(rate)
    if method.tuning == "noise_lora" and setup.generator_lr is not None:
        ratio = setup.generator_lr / setup.learning_rates["noise_lora"] if setup.learning_rates else 1.0
        env["NG_LR"] = str(setup.generator_lr if lr is None else float(f"{lr * ratio:.6g}"))
    env.update(_budget_env(setup, setup.budget.steps, manifest, spec))
    env["EXTRA_ARGS"] = " ".join(_flags(recipe, method, setup, spec, seed))
    return env


def learning_rate(setup: Setup, method: Method, lr: Optional[float] = None) -> Optional[float]:
    """The rate ``method`` trains at: ``lr`` (a search), else the comparison's rate for its tuning, else None (the
    recipe's own default)."""
    if lr is not None:
        return lr
    return setup.learning_rates[method.tuning] if setup.learning_rates is not None else None


def _budget_env(setup: Setup, steps: Optional[int], manifest: Optional[dict], spec: ComparisonRecipes) -> dict:
    env: dict[str, str] = {}
    if steps is not None:
        env["MAX_STEPS"] = str(steps)
    if setup.budget.batch is not None:
        env.update(BATCH_SIZE=str(setup.budget.batch), GRAD_ACCUM="1")
    env["HAS_GPU"] = "1" if _has_gpu() else "0"  # spares each recipe its own torch import to find out
    if setup.profile == "tiny":
        env.update(LOGGING_STEPS="1", SAVE_STEPS=str(NO_INTERMEDIATE_SAVES), NUM_WORKERS="1")
        env.update({variable: manifest[key] for variable, key in spec.tiny.env.items()})
    return env


def base_env(spec: ComparisonRecipes, setup: Setup, manifest: dict, output_dir: Path) -> dict[str, str]:
    """The recipe's environment for the tiny world's stage-1 base: full training of the random tiny model on the
    white-background split, the connector at its own learning rate."""
    tiny = spec.tiny
    env = {**spec.env, **spec.recipes["base"].env, "MODEL_PATH": manifest[tiny.start_model],
           "DATA_PATH": manifest[tiny.base_data], "IMAGE_FOLDER": manifest["image_folder"],
           "OUTPUT_DIR": str(output_dir), "LR": str(tiny.base_lr)}
    env.update(_budget_env(setup, setup.budget.base_steps or tiny.base_steps, manifest, spec))
    flags = ["--seed", "0", "--data_seed", "0", *spec.recipes["base"].flags, tiny.connector_lr_flag,
             str(tiny.connector_lr)]
    env["EXTRA_ARGS"] = " ".join(flags)
    return env


def recipe_command(spec: ComparisonRecipes, tuning: str) -> list[str]:
    return ["bash", spec.recipes[tuning].script]


def eval_argv(spec: ComparisonRecipes, setup: Setup, checkpoint: str, model_base: Optional[str], questions: str,
              answers: Path, seed: int) -> list[str]:
    """Flags of ``python -m <eval module>`` for greedy answers to ``questions``; noise as the checkpoint stores it
    (sampled with ``seed``)."""
    cmd = ["--model-path", checkpoint, "--question-file", questions,
           "--answers-file", str(answers), "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS),
           "--seed", str(seed), *spec.eval_flags]
    if setup.image_folder:
        cmd += ["--image-folder", setup.image_folder]
    if model_base:
        cmd += ["--model-base", model_base]
    if setup.profile == "tiny":
        cmd += ["--batch-size", str(spec.tiny.eval_batch)]
    return cmd


def benchmark_commands(backbone: str, world: str, out: Path) -> dict[str, list[str]]:
    """benchmarks/training_step.py and benchmarks/inference_latency.py on the tiny world, one CPU thread (steadier
    on a shared machine), results as JSON into ``out``; docs/benchmarks.md is left alone."""
    common = ["--backbone", backbone, "--preset", "tiny", "--world", world, "--no-write"]
    return {
        "training_step": [sys.executable, "-m", "benchmarks.training_step", *common, "--steps", "10",
                          "--threads", "1", "--json", str(out / "training_step.json")],
        "inference_latency": [sys.executable, "-m", "benchmarks.inference_latency", *common, "--repeats", "20",
                              "--threads", "1", "--json", str(out / "inference_latency.json")],
    }
