"""Running a comparison unit by unit: the tiny world's stage-1 base (when no start checkpoint is given), then one
training + evaluation per (method, seed), then the efficiency measurement; a line per unit with the time left.

Every unit runs the project's own commands with their logs under the unit's ``logs/``: the backbone's recipes in
``scripts/`` and ``benchmarks/`` as subprocesses, the backbone's question-answering module in this process (a
subprocess would pay the imports and model loading start-up again for every unit, as long as the evaluation itself
on the tiny world). A unit that already has its done-marker is skipped, so an interrupted comparison resumes where
it stopped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..files import read_json
from ..redaction import command_line
from ..training.runs import loss_ends
from . import commands
from .lr_search import validation_overall
from .plan import Method
from .recipes import ComparisonRecipes
from .setup import Setup
from .units import Unit

TRAINABLE_RE = re.compile(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)")


class UnitFailed(RuntimeError):
    """A unit's command exited non-zero; the message names the command, its log and the log's last lines."""


def run_logged(cmd: list[str], log: Path, cwd: Path, env: Optional[dict[str, str]] = None) -> tuple[float, str]:
    """Run ``cmd`` in ``cwd`` with stdout+stderr appended to ``log``; (seconds, the whole log). ``env`` is added to
    ours. Appending keeps what an earlier attempt of the unit logged: a recipe rerun on a finished training says
    only that it is finished, and the trainable-parameter line is in the attempt that trained."""
    log.parent.mkdir(parents=True, exist_ok=True)
    unset = sorted(key for key, value in (env or {}).items() if value is None)
    if unset:
        raise ValueError(f"{command_line(cmd)}: no value for {', '.join(unset)} (a bug of the comparison's setup).")
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")  # recipes' python
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as handle:
        shown = command_line([f"{k}={v}" for k, v in sorted((env or {}).items())])
        handle.write(f"# {shown} {command_line(cmd)}\n")
        handle.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    output = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise UnitFailed(f"{command_line(cmd)} exited with {proc.returncode} after {seconds:.0f} s; last lines of "
                         f"{log}:\n{tail}")
    return seconds, output


def training_summary(output_dir: Path, log_text: str, log: Path) -> dict[str, Any]:
    """Trainable parameters (the training log's ``trainable params`` line) and what the Trainer's state records:
    steps, runtime, first and last loss, peak GPU memory when it was measured."""
    found = TRAINABLE_RE.findall(log_text)
    if not found:
        raise ValueError(f"{log} has no 'trainable params: …' line; cannot report the trainable share. If the run in "
                         f"{output_dir} was trained before this log was written, delete that folder to train it again.")
    trainable, total, share = found[-1]
    state = read_json(output_dir / "trainer_state.json", "the Trainer state of a finished training run")
    history = state.get("log_history", [])
    losses = [float(h["loss"]) for h in history if "loss" in h]
    final = next((h for h in reversed(history) if "train_runtime" in h), {})
    steps = int(state.get("global_step") or 0)
    runtime = final.get("train_runtime")
    return {
        "trainable_params": int(trainable.replace(",", "")),
        "total_params": int(total.replace(",", "")),
        "trainable_percent": float(share),
        "steps": steps,
        "train_runtime": runtime,
        "seconds_per_step": runtime / steps if runtime and steps else None,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_start_mean": loss_ends(losses)[0] if losses else None,  # the first / last tenth of the steps
        "loss_end_mean": loss_ends(losses)[1] if losses else None,
        "peak_gpu_memory_bytes": final.get("train_mem_gpu_peaked_delta"),
    }


@dataclass
class Context:
    """What every unit of one comparison needs."""

    spec: ComparisonRecipes
    setup: Setup
    repo: Path
    out: Path
    manifest: Optional[dict]
    questions: Optional[str] = None  # the eval questions actually asked (a per-family subset or the whole file)
    truth: Optional[str] = None
    val_questions: Optional[str] = None  # the validation questions a learning-rate search asks (cut alike)
    val_truth: Optional[str] = None
    families: list[str] = field(default_factory=list)  # the evaluated families (validation overall = their mean)


def run_base(unit: Unit, ctx: Context) -> dict[str, Any]:
    checkpoint = unit.folder / "checkpoint"
    env = commands.base_env(ctx.spec, ctx.setup, ctx.manifest, checkpoint)
    seconds, output = run_logged(commands.recipe_command(ctx.spec, "base"), unit.logs / "train.log", ctx.repo, env)
    # What the base learnt where it was trained (white backgrounds): a family it does not know there cannot be
    # "recovered" on the shifted split by any method.
    questions, truth = balanced_subset(ctx.manifest["eval_questions"], ctx.manifest["eval_answers"],
                                       ctx.setup.budget.eval_per_family, unit.folder / "white_eval")
    white = evaluate(unit, ctx, str(checkpoint), None, questions, truth, "white_answers")
    return {"checkpoint": str(checkpoint), "seconds": seconds,
            "train": training_summary(checkpoint, output, unit.logs / "train.log"), "white_eval": white}


def run_method(unit: Unit, method: Method, ctx: Context, start: str) -> dict[str, Any]:
    """Train ``method`` (unless it is the start checkpoint as it is), then answer and score the eval questions (and
    the validation questions when the comparison searches learning rates)."""
    result: dict[str, Any] = {"tuning": method.tuning, "lora_rank": method.lora_rank,
                              "generator_flags": list(method.generator_flags), "train_flags": list(method.train_flags),
                              "learning_rate": commands.learning_rate(ctx.setup, method, unit.lr) if method.trains
                              else None, "search": unit.lr is not None}
    checkpoint, model_base = start, None
    if method.trains:
        checkpoint, model_base = str(unit.folder / "checkpoint"), start
        env = commands.training_env(ctx.spec, ctx.setup, method, unit.seed, start, Path(checkpoint), ctx.manifest,
                                    unit.lr)
        log = unit.logs / "train.log"
        seconds, output = run_logged(commands.recipe_command(ctx.spec, method.tuning), log, ctx.repo, env)
        result["train"] = {"seconds": seconds, **training_summary(Path(checkpoint), output, log)}
    result.update(checkpoint=checkpoint, model_base=model_base)
    if ctx.questions:
        result["eval"] = evaluate(unit, ctx, checkpoint, model_base)
    if ctx.val_questions:
        result["val"] = evaluate(unit, ctx, checkpoint, model_base, ctx.val_questions, ctx.val_truth, "val_answers")
        result["val"]["overall"] = validation_overall(result["val"], ctx.families)
    return result


def run_module(module: str, argv: list[str], log: Path) -> float:
    """``python -m module argv`` in this process (its imports are paid once per comparison, not once per unit),
    its printing into ``log``; seconds. A failure raises UnitFailed naming the command and the log."""
    import contextlib
    import importlib
    import traceback

    log.parent.mkdir(parents=True, exist_ok=True)
    command = command_line(["python", "-m", module, *argv])
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        print(f"# {command}", flush=True)
        try:
            importlib.import_module(module).main(argv)
            failure = None
        except SystemExit as exit_:  # argparse
            failure = None if exit_.code in (0, None) else f"exit {exit_.code}"
        except Exception as err:  # noqa: BLE001 - any error of the module fails the unit, with its traceback logged
            traceback.print_exc()
            failure = f"{type(err).__name__}: {err}"
    if failure:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise UnitFailed(f"{command} failed ({failure}); last lines of {log}:\n{tail}")
    return time.perf_counter() - start


def evaluate(unit: Unit, ctx: Context, checkpoint: str, model_base: Optional[str], questions: Optional[str] = None,
             truth: Optional[str] = None, name: str = "answers") -> dict[str, Any]:
    """Answer ``questions`` (default: the comparison's eval questions) into ``unit/<name>.jsonl`` and score them
    against ``truth``."""
    from tiny_world import score_answers

    questions, truth = questions or ctx.questions, truth or ctx.truth
    answers = unit.folder / f"{name}.jsonl"
    argv = commands.eval_argv(ctx.spec, ctx.setup, checkpoint, model_base, questions, answers, unit.seed or 0)
    seconds = run_module(ctx.spec.eval_module, argv, unit.logs / f"{name.replace('answers', 'eval')}.log")
    return {"seconds": seconds, "answers": str(answers), "scores": score_answers(str(answers), truth)}


def run_efficiency(unit: Unit, ctx: Context) -> dict[str, Any]:
    """benchmarks/training_step.py and inference_latency.py on the tiny world (fresh random models: timing does not
    depend on trained weights)."""
    results: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    world = ctx.setup.world
    if (ctx.manifest.get("preset"), ctx.manifest.get("seed")) != ("tiny", 0):
        world = str(unit.folder / "world")  # the benchmarks build (tiny, seed 0) and would rebuild another world
    for name, cmd in commands.benchmark_commands(ctx.setup.backbone, world, unit.folder).items():
        seconds, _ = run_logged(cmd, unit.logs / f"{name}.log", ctx.repo)
        results[name] = {"seconds": seconds, **read_json(unit.folder / f"{name}.json", f"{name}'s JSON output")}
    results["load_after"] = os.getloadavg()[0]
    return results


@dataclass
class Progress:
    """A line per unit: what ran, how long it took, the time left (mean of the units run so far, by kind)."""

    total: int
    done: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def skipped(self, unit: Unit) -> None:
        self.done += 1
        print(f"[compare] ({self.done}/{self.total}) {unit.label}: done before, skipped", flush=True)

    def finished(self, unit: Unit, seconds: float, summary: str, remaining: list[Unit]) -> None:
        self.done += 1
        self.seconds.setdefault(unit.cost_kind, []).append(seconds)
        left = sum(self._estimate(u) for u in remaining)
        elapsed = time.perf_counter() - self.started
        print(f"[compare] ({self.done}/{self.total}) {unit.label}: {summary} in {seconds:.0f} s | elapsed "
              f"{_clock(elapsed)}, left ~{_clock(left)}", flush=True)

    def _estimate(self, unit: Unit) -> float:
        """The mean time of the units of its kind run so far, else of every unit run so far."""
        runs = self.seconds.get(unit.cost_kind) or [s for kind in self.seconds.values() for s in kind]
        return sum(runs) / len(runs)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


# ----------------------------------------------------------------------------------------------------- the loop
def balanced_subset(questions: str, truth: str, per_family: Optional[int], folder: Path) -> tuple[str, str]:
    """(questions, truth) files cut to the first ``per_family`` questions of each family in file order (the files
    themselves when ``per_family`` is None)."""
    from ..files import read_records, write_jsonl

    if per_family is None:
        return questions, truth
    truth_rows = read_records(truth, expected="the eval split's truth file")
    taken: dict[str, int] = {}
    keep = set()
    for row in truth_rows:
        if taken.get(row["family"], 0) < per_family:
            taken[row["family"]] = taken.get(row["family"], 0) + 1
            keep.add(row["question_id"])
    paths = (folder / "eval_questions.jsonl", folder / "eval_answers.jsonl")
    write_jsonl(paths[0], [r for r in read_records(questions) if r["question_id"] in keep])
    write_jsonl(paths[1], [r for r in truth_rows if r["question_id"] in keep])
    return str(paths[0]), str(paths[1])


def run_units(units: list[Unit], ctx: Context, methods: dict[str, Method]) -> None:
    """Run every unit that is not done yet, in order; the stage-1 base (if any) comes first and is the start."""
    progress = Progress(len(units))
    start = ctx.setup.start
    for index, unit in enumerate(units):
        if unit.is_done():
            progress.skipped(unit)
            if unit.kind == "base":
                start = unit.result()["checkpoint"]
            continue
        print(f"[compare] ({progress.done + 1}/{progress.total}) {unit.label}: running (logs: {unit.logs})",
              flush=True)
        began = time.perf_counter()
        if unit.kind == "base":
            result = run_base(unit, ctx)
            start = result["checkpoint"]
        elif unit.kind == "efficiency":
            result = run_efficiency(unit, ctx)
        else:
            result = run_method(unit, methods[unit.method], ctx, start)
        unit.finish(result)
        remaining = [u for u in units[index + 1:] if not u.is_done()]
        progress.finished(unit, time.perf_counter() - began, summary_of(result), remaining)


def summary_of(result: dict[str, Any]) -> str:
    parts = []
    if "train" in result:
        train = result["train"]
        if train.get("loss_start_mean") is not None:
            loss = f"mean loss {train['loss_start_mean']:.3f} -> {train['loss_end_mean']:.3f} (first / last tenth)"
        elif train.get("loss_first") is not None:  # a unit finished before the means were recorded
            loss = f"loss {train['loss_first']:.3f} -> {train['loss_last']:.3f}"
        else:
            loss = "no loss logged"
        parts.append(f"trained {train['steps']} steps ({loss}, {train['trainable_percent']:.2f}% trainable)")
    if "eval" in result:
        scores = result["eval"]["scores"]
        parts.append(f"{100 * scores['overall']:.1f}% of {scores['n']} questions")
    if "training_step" in result:
        parts.append("step time, memory and latency measured")
    return ", ".join(parts) or "done"
