"""MuNG quickstart on the tiny world, CPU, one command (``bash scripts/quickstart.sh [--backbone NAME]``: llava,
qwen, or a transformers VLM family of the tiny world).

Stages (each one the project's own command, run as a subprocess with its log under ``<out>/<backbone>/logs/``):

0. world  ``python -m tiny_world`` (or ``--tiny-world DIR``, a world built before).
1. base   a quick full fine-tuning of the tiny random model on the white-background train split
          (``scripts/v1_5/finetune.sh`` / ``scripts/qwen/finetune_full.sh``): the "pretrained" model a user starts
          from, as real users start from LLaVA-1.5 or Qwen2.5-VL.
2. MuNG   from that base, on the dark noisy domain-shift train split: generator + LoRA for LLaVA
          (``scripts/v1_5/finetune_noise_lora.sh``), generator only for Qwen (``scripts/qwen/finetune_noise.sh``);
          once per seed (``--seeds``).
   control the same steps, batch and data with LoRA r32 and no generator (``finetune_lora.sh``): what the
          generator itself adds is MuNG minus the control, not MuNG minus the untuned base.
3. eval   ``model_vqa_loader`` on the shift eval split (60 questions per family), before = the base as it is (no
          generator, so no noise: what the user has before MuNG; stage 2 at step 0 differs from it only by the
          untrained generator's random noise, which would flatter the gain), after = the MuNG checkpoint in its
          stored inference mode, control = the LoRA checkpoint. The base is also scored on the white-background
          eval split (what stage 1 reached).
4. score  ``tiny_world.score_answers`` per family (with its question count and chance accuracy) and overall; with
          several seeds, mean ± std over them.
5. CLI    one shift-eval question through ``python -m <backbone>.serve.cli``, typed on stdin.
6. noise  the noise map of that question's image (``python -m mung.visualize``), written as a PNG.
7. report printed (with what to run next) and written to ``<out>/<backbone>/quickstart_report.json``.

``--fast`` shrinks every stage (a few steps, a few questions) to check the plumbing in about a minute; its
accuracies mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))  # quickstart_backbones, also when this file is loaded as a module
import quickstart_backbones  # noqa: E402
from quickstart_progress import run_logged  # noqa: E402
from mung.help_text import description  # noqa: E402
from mung.commands import run_command  # noqa: E402
from mung.files import check_output_path, clear_own_folder, mark_created  # noqa: E402
from mung.redaction import command_line  # noqa: E402
from mung.training.runs import loss_ends  # noqa: E402

REPORT_NAME = "quickstart_report.json"
TRAINABLE_RE = re.compile(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)")
MAX_NEW_TOKENS = 8
SAMPLES = 5


# ----------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Stage:
    """One training run: optimiser steps, per-device batch and learning rate (``ng_lr``: the generator's,
    ``projector_lr``: the vision-to-LLM connector's, LLaVA's ``--mm_projector_lr`` or Qwen's ``--merger_lr``)."""

    steps: int
    batch: int
    lr: float
    ng_lr: Optional[float] = None
    projector_lr: Optional[float] = None


@dataclass(frozen=True)
class Plan:
    base: Stage
    mung: Stage
    control: Stage  # LoRA r32 without the generator, the same steps and batch as ``mung``
    eval_questions: Optional[int]  # None: the whole split
    eval_batch: int
    seeds: int  # stage-2 runs (MuNG and control) per seed; the report gives their mean ± std


# LLaVA and Qwen run with their comparison settings (``<backbone>/comparison.py``, ``TinyWorldSettings``): the
# stage-1 base's steps and rates, and stage 2 at the budget and the learning rates ``python -m mung.compare
# --lr-search --fast`` chose on the validation split (docs/results.md names the command and the tables). So the
# quickstart's MuNG and control are the comparison's MuNG+LoRA r32 (LLaVA) or MuNG (Qwen) and LoRA r32, seed 0.
# Qwen's generator alone varies more from seed to seed than LLaVA's generator with LoRA: two seeds by default.
COMPARED = {"llava": ("noise_lora", 32, 1), "qwen": ("noise", 16, 2)}  # MuNG's tuning, eval batch, seeds


def comparison_plan(name: str) -> Plan:
    from mung.backbones import by_name
    from mung.compare.plan import TINY_FAST

    tiny = by_name(name).comparison.tiny
    tuning, eval_batch, seeds = COMPARED[name]
    steps, batch = TINY_FAST.steps, TINY_FAST.batch
    generator_lr = tiny.generator_lr if tuning == "noise_lora" else None
    return Plan(base=Stage(tiny.base_steps, batch, tiny.base_lr, projector_lr=tiny.connector_lr),
                mung=Stage(steps, batch, tiny.learning_rates[tuning], ng_lr=generator_lr),
                control=Stage(steps, batch, tiny.learning_rates["lora"]),
                eval_questions=None, eval_batch=eval_batch, seeds=seeds)


def rates_chosen_by(name: str) -> Optional[str]:
    """The command whose learning-rate search chose the backbone's stage-2 rates (None: rates set by hand)."""
    if name not in COMPARED:
        return None
    from mung.backbones import by_name

    return by_name(name).comparison.tiny.rates_chosen_by or None


PLANS: dict[str, Plan] = {}  # the tiny world's transformers VLM families; LLaVA and Qwen: comparison_plan
FAMILY_PLAN = quickstart_backbones.PLAN  # every transformers VLM family of the tiny world (see quickstart_backbones)
PLANS.update({name: Plan(base=Stage(**FAMILY_PLAN["base"]), mung=Stage(**FAMILY_PLAN["mung"]),
                         control=Stage(**FAMILY_PLAN["control"]), eval_questions=FAMILY_PLAN["eval_questions"],
                         eval_batch=FAMILY_PLAN["eval_batch"], seeds=FAMILY_PLAN["seeds"])
              for name in quickstart_backbones.families()})
# --fast: one step per stage and one question per family, batched into one eval batch: every stage runs once.
FAST_PLAN = Plan(base=Stage(steps=1, batch=2, lr=1e-3), mung=Stage(steps=1, batch=2, lr=1e-3, ng_lr=1e-3),
                 control=Stage(steps=1, batch=2, lr=1e-3), eval_questions=5, eval_batch=5, seeds=1)
CONTROL_RANK = 32


@dataclass(frozen=True)
class Backbone:
    name: str
    base_recipe: str
    mung_recipe: str
    control_recipe: str
    lora_alpha: int  # of the control's LoRA r32: the recipes' convention (LLaVA alpha 2r, Qwen alpha r)
    mung_label: str
    eval_module: str
    cli_module: str
    train_json: str  # manifest keys
    shift_train_json: str


BACKBONES = {
    "llava": Backbone("llava", "scripts/v1_5/finetune.sh", "scripts/v1_5/finetune_noise_lora.sh",
                      "scripts/v1_5/finetune_lora.sh", 2 * CONTROL_RANK,
                      "noise generator + LoRA (r 32) + projector", "llava_noise.eval.model_vqa_loader",
                      "llava_noise.serve.cli", "llava_train_json", "llava_shift_train_json"),
    "qwen": Backbone("qwen", "scripts/qwen/finetune_full.sh", "scripts/qwen/finetune_noise.sh",
                     "scripts/qwen/finetune_lora.sh", CONTROL_RANK,
                     "noise generator only (MLLM frozen)", "qwen_noise.eval.model_vqa_loader",
                     "qwen_noise.serve.cli", "qwen_train_json", "qwen_shift_train_json"),
}
BACKBONES.update({name: Backbone(name, **quickstart_backbones.RECIPES) for name in quickstart_backbones.families()})


# ----------------------------------------------------------------------------------------------------- running
class StepFailed(RuntimeError):
    """A stage's command exited non-zero; the message names the command and its log."""


def child_env(threads: int, extra: Optional[dict] = None) -> dict:
    """The environment of every stage: this interpreter's bin first on PATH (the recipes call ``python``), one
    BLAS/OpenMP thread per process unless the caller set OMP_NUM_THREADS (with 2 cores, one trains while a
    DataLoader worker decodes images; more threads than free cores slow a tiny model down many times over)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["HAS_GPU"] = "0"  # the quickstart is the CPU demo; the recipes pick DeepSpeed/bf16 on GPUs themselves
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def run(name: str, cmd: list[str], log: Path, env: dict, stdin: Optional[str] = None) -> tuple[float, str]:
    """Run ``cmd`` from the repository root with stdout+stderr to ``log`` and its progress on screen; (seconds,
    output). Fails loudly."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[quickstart] {name}: {command_line(cmd)}  (log: {log})", flush=True)
    start = time.perf_counter()
    returncode = run_logged(name, cmd, REPO, env, log, stdin)
    seconds = time.perf_counter() - start
    output = log.read_text(encoding="utf-8", errors="replace")
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise StepFailed(f"{name} failed (exit {returncode}) after {seconds:.0f} s: {command_line(cmd)}\n"
                         f"last lines of {log}:\n{tail}")
    print(f"[quickstart] {name}: done in {seconds:.1f} s", flush=True)
    return seconds, output


# ----------------------------------------------------------------------------------------------------- stages
def training_env(backbone: Backbone, stage: Stage, model: str, data: str, manifest: dict, output_dir: Path,
                 seed: int) -> dict:
    """Environment variables of the recipe (see scripts/v1_5/_launch.sh and scripts/qwen/_launch.sh)."""
    env = {
        "MODEL_PATH": model,
        "DATA_PATH": data,
        "IMAGE_FOLDER": manifest["image_folder"],
        "OUTPUT_DIR": str(output_dir),
        "MAX_STEPS": stage.steps,
        "BATCH_SIZE": stage.batch,
        "LR": stage.lr,
        "LOGGING_STEPS": 1,
        "SAVE_STEPS": 10**6,  # no intermediate checkpoint-N: only the final folder
        "NUM_WORKERS": 1,
        "EXTRA_ARGS": f"--seed {seed} --data_seed {seed}",
    }
    if backbone.name == "llava":
        env.update(VISION_TOWER=manifest["llava_vision_tower"], PRETRAIN_MM_MLP_ADAPTER="", GRAD_ACCUM=1)
    else:
        env.update(GLOBAL_BATCH=stage.batch)  # gradient accumulation 1
    if stage.ng_lr is not None:
        env["NG_LR"] = stage.ng_lr
    if stage.projector_lr is not None:
        flag = "--mm_projector_lr" if backbone.name == "llava" else "--merger_lr"
        env["EXTRA_ARGS"] += f" {flag} {stage.projector_lr}"
    return env


def loss_summary(output_dir: Path) -> dict:
    """Training losses from the Trainer's ``trainer_state.json`` (logged every step)."""
    state_file = output_dir / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{state_file} is missing: the training run did not save its state.")
    history = json.loads(state_file.read_text(encoding="utf-8"))["log_history"]
    curve = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
    if not curve:
        raise ValueError(f"{state_file} logs no training loss.")
    losses = [loss for _, loss in curve]
    start_mean, end_mean = loss_ends(losses)
    return {
        "loss_start": losses[0],
        "loss_end": losses[-1],
        "loss_start_mean": start_mean,  # mean over the first / last tenth of the steps
        "loss_end_mean": end_mean,
        "loss_curve": curve,
    }


def trainable_summary(log_text: str, log: Path) -> dict:
    """Trainable parameters from the training log's ``describe_trainable`` line."""
    found = TRAINABLE_RE.findall(log_text)
    if not found:
        raise ValueError(f"{log} has no 'trainable params: …' line; cannot report the trainable share.")
    trainable, total, share = found[-1]
    return {"trainable_params": int(trainable.replace(",", "")), "total_params": int(total.replace(",", "")),
            "trainable_percent": float(share)}


def subset(questions: str, truth: str, dst_dir: Path, limit: Optional[int]) -> tuple[str, str]:
    """(questions, truth) jsonl files cut to ``limit`` questions (the files themselves when ``limit`` is None):
    the first question of each family, then the next ones in file order, so even a few questions cover every
    family (the tiny world is mostly colour and shape questions)."""
    if limit is None:
        return questions, truth
    truth_rows = read_jsonl(truth)
    family = {row["question_id"]: row["family"] for row in truth_rows}
    rows = read_jsonl(questions)
    firsts, seen = [], set()
    for row in rows:
        if family[row["question_id"]] not in seen:
            seen.add(family[row["question_id"]])
            firsts.append(row["question_id"])
    rest = [row["question_id"] for row in rows if row["question_id"] not in set(firsts)]
    keep = set((firsts + rest)[:limit])
    dst_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for src, src_rows in ((questions, rows), (truth, truth_rows)):
        dst = dst_dir / Path(src).name
        dst.write_text("".join(json.dumps(r) + "\n" for r in src_rows if r["question_id"] in keep), encoding="utf-8")
        paths.append(str(dst))
    return paths[0], paths[1]


def eval_cmd(backbone: Backbone, model: str, base: Optional[str], questions: str, manifest: dict, answers: Path,
             plan: Plan, seed: int) -> list[str]:
    cmd = [sys.executable, "-m", backbone.eval_module, "--model-path", model, "--question-file", questions,
           "--image-folder", manifest["image_folder"], "--answers-file", str(answers), "--temperature", "0",
           "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", "--seed", str(seed)]
    if base:
        cmd += ["--model-base", base]
    cmd += ["--batch-size", str(plan.eval_batch)]
    if backbone.name == "llava":
        cmd += ["--conv-mode", "vicuna_v1", "--num-workers", "1"]
    return cmd


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def scores_of(answers: Path, truth: str) -> dict:
    from tiny_world import score_answers

    scores = score_answers(str(answers), truth)
    for key in ("overall",):
        if not math.isfinite(scores[key]):
            raise ValueError(f"scoring {answers} gave a non-finite {key}: {scores[key]}")
    return scores


def cli_reply(output: str) -> str:
    """The assistant's reply in a CLI transcript ("USER: ASSISTANT: <reply>\\nUSER: exit...")."""
    match = re.search(r"ASSISTANT: (.*?)\s*(?:\n|USER:|$)", output)
    if match is None:
        raise ValueError(f"no 'ASSISTANT:' reply in the CLI output:\n{output[-2000:]}")
    return match.group(1).strip()


def pick_samples(questions: str, truth: str, before: Path, after: Path, n: int) -> list[dict]:
    """The first question of each family (in file order, not chosen by outcome), up to ``n``."""
    from tiny_world import normalize_answer

    truths = {row["question_id"]: row for row in read_jsonl(truth)}
    b = {row["question_id"]: row["text"] for row in read_jsonl(before)}
    a = {row["question_id"]: row["text"] for row in read_jsonl(after)}
    samples, seen = [], set()
    for q in read_jsonl(questions):
        t = truths[q["question_id"]]
        if t["family"] in seen:
            continue
        seen.add(t["family"])
        samples.append({"question_id": q["question_id"], "image": q.get("image"), "family": t["family"],
                        "question": q["text"].split("\n")[0], "truth": t["answer"],
                        "before": b.get(q["question_id"]), "after": a.get(q["question_id"]),
                        "before_correct": normalize_answer(b.get(q["question_id"], "")) == t["answer"],
                        "after_correct": normalize_answer(a.get(q["question_id"], "")) == t["answer"]})
        if len(samples) == n:
            break
    return samples


# ----------------------------------------------------------------------------------------------------- main flow
def over_seeds(runs: list[dict]) -> dict:
    """Mean and sample std (None for one run) of overall and per-family accuracy over the seeds' scores."""
    def stats(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None}

    families = runs[0]["per_family"]
    return {"seeds": len(runs), "overall": stats([r["overall"] for r in runs]),
            "per_family": {f: stats([r["per_family"][f] for r in runs]) for f in families}}


def stage_two(backbone: Backbone, plan: Plan, args: argparse.Namespace, ctx: dict, seed: int) -> dict:
    """MuNG and the control (LoRA r32, no generator) from the base with ``seed``, each evaluated on the shift
    split; their folders, logs, seconds and scores."""
    manifest, run_dir, logs, base_dir = ctx["manifest"], ctx["run_dir"], ctx["logs"], ctx["base_dir"]
    suffix = "" if seed == args.seed else f"-seed{seed}"
    out: dict = {"seed": seed, "seconds": {}}
    runs = {"mung": (plan.mung, backbone.mung_recipe, {}, f"MuNG ({backbone.mung_label})"),
            "control": (plan.control, backbone.control_recipe,
                        {"LORA_R": CONTROL_RANK, "LORA_ALPHA": backbone.lora_alpha, "TUNE": "lora"},
                        f"control (LoRA r{CONTROL_RANK}, no generator)")}
    for key, (stage, recipe, extra, label) in runs.items():
        folder = run_dir / f"{key}{suffix}"
        env = {**training_env(backbone, stage, str(base_dir), manifest[backbone.shift_train_json], manifest,
                              folder, seed), **extra}
        out["seconds"][key], log_text = run(f"stage 2: {label}, seed {seed}, dark noisy backgrounds",
                                            ["bash", recipe], logs / f"stage2_{key}{suffix}.log",
                                            child_env(args.threads, env))
        answers = ctx["eval_dir"] / f"{'after' if key == 'mung' else key}{suffix}.jsonl"
        out["seconds"][f"eval_{'after' if key == 'mung' else key}"], _ = run(
            f"eval: {label}, seed {seed}, on the shift eval split",
            eval_cmd(backbone, str(folder), str(base_dir), ctx["shift_q"], manifest, answers, plan, seed),
            logs / f"eval_{key}{suffix}.log", ctx["env"])
        out[key] = {"dir": folder, "log": log_text, "logfile": logs / f"stage2_{key}{suffix}.log",
                    "answers": answers, "scores": scores_of(answers, ctx["shift_t"])}
    return out


def ask_and_draw(backbone: Backbone, args: argparse.Namespace, ctx: dict, mung_dir: Path,
                 seconds: dict) -> tuple[dict, Path]:
    """The first shift-eval question through the CLI (typed on stdin) and the noise map of its image."""
    question_row, truth = read_jsonl(ctx["shift_q"])[0], read_jsonl(ctx["shift_t"])[0]
    image = str(Path(ctx["manifest"]["image_folder"]) / question_row["image"])
    question = question_row["text"]
    model = ["--model-path", str(mung_dir), "--model-base", str(ctx["base_dir"])]
    cli_cmd = [sys.executable, "-m", backbone.cli_module, *model, "--image-file", image, "--device", "cpu",
               "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), "--seed", str(args.seed)]
    seconds["cli"], cli_out = run("CLI: one question on stdin", cli_cmd, ctx["logs"] / "cli.log", ctx["env"],
                                  stdin=question.replace("\n", " ") + "\n")
    noise_map = ctx["run_dir"] / "noise_map.png"
    noise_cmd = [sys.executable, "-m", "mung.visualize", *model, "--image-file", image,
                 "--question", question.split("\n")[0], "--out", str(noise_map), "--device", "cpu"]
    seconds["noise_map"], _ = run("noise map of that question's image", noise_cmd, ctx["logs"] / "noise_map.log",
                                  ctx["env"])
    cli = {"command": command_line(cli_cmd), "question": question, "image": image, "truth": truth["answer"],
           "reply": cli_reply(cli_out)}
    return cli, noise_map


def quickstart(args: argparse.Namespace) -> dict:
    import tiny_world

    t0 = time.perf_counter()
    backbone = BACKBONES[args.backbone]
    plan = FAST_PLAN if args.fast else (PLANS.get(args.backbone) or comparison_plan(args.backbone))
    seeds = [args.seed + k for k in range(args.seeds or plan.seeds)]
    out = Path(args.out).resolve()
    run_dir = out / backbone.name
    check_output_path(run_dir, "--out", {"--tiny-world": args.tiny_world}, kind="folder")
    # the quickstart's own outputs from an earlier run (recipes would resume them); never a folder it did not make
    clear_own_folder(run_dir, "--out", "scripts/quickstart.py")
    mark_created(run_dir, "scripts/quickstart.py")
    logs = run_dir / "logs"
    env = child_env(args.threads)
    seconds: dict[str, float] = {}

    # 0. world
    if args.tiny_world:
        world_dir = Path(args.tiny_world).resolve()
        seconds["world"] = 0.0
    else:
        world_dir = out / "tiny_world"
        seconds["world"], _ = run("world", [sys.executable, "-m", "tiny_world", "--out", str(world_dir), "--seed",
                                            str(args.world_seed)], logs / "world.log", env)
    manifest = tiny_world.load_manifest(str(world_dir))

    # 1. base
    base_dir = run_dir / "base"
    start_model = quickstart_backbones.start_model(backbone.name, str(world_dir)) or (
        manifest["llava_llm"] if backbone.name == "llava" else manifest["qwen_model"])
    base_env = training_env(backbone, plan.base, start_model, manifest[backbone.train_json], manifest, base_dir,
                            args.seed)
    seconds["base"], _ = run("stage 1: base (full fine-tuning, white backgrounds)", ["bash", backbone.base_recipe],
                             logs / "stage1_base.log", child_env(args.threads, base_env))

    # 2-4. MuNG and control per seed, evaluated; the base before them
    eval_dir = run_dir / "eval"
    shift_q, shift_t = subset(manifest["shift_eval_questions"], manifest["shift_eval_answers"], eval_dir,
                              plan.eval_questions)
    white_q, white_t = subset(manifest["eval_questions"], manifest["eval_answers"], eval_dir, plan.eval_questions)
    answers = {k: eval_dir / f"{k}.jsonl" for k in ("base_white", "before")}
    if not args.fast:  # what stage 1 reached; --fast skips it to keep the plumbing check short
        seconds["eval_base_white"], _ = run(
            "eval: base on the white-background eval split",
            eval_cmd(backbone, str(base_dir), None, white_q, manifest, answers["base_white"], plan, args.seed),
            logs / "eval_base_white.log", env)
    seconds["eval_before"], _ = run(
        "eval before: base, no generator, on the shift eval split",
        eval_cmd(backbone, str(base_dir), None, shift_q, manifest, answers["before"], plan, args.seed),
        logs / "eval_before.log", env)
    ctx = {"manifest": manifest, "run_dir": run_dir, "logs": logs, "base_dir": base_dir, "eval_dir": eval_dir,
           "shift_q": shift_q, "shift_t": shift_t, "env": env, "world_dir": world_dir, "out": out,
           "answers": answers, "white_t": white_t}
    runs = [stage_two(backbone, plan, args, ctx, seed) for seed in seeds]
    for r in runs:
        for key, value in r["seconds"].items():
            seconds[key] = seconds.get(key, 0.0) + value
    mung_dir = runs[0]["mung"]["dir"]

    # 5. CLI, 6. noise map
    cli, noise_map = ask_and_draw(backbone, args, ctx, mung_dir, seconds)
    seconds["total"] = time.perf_counter() - t0

    report = compose_report(args, backbone, plan, seeds, ctx, runs, seconds, cli, noise_map)
    report_file = run_dir / REPORT_NAME
    report_file.write_text(json.dumps(report, indent=2), encoding="utf-8")
    report["report_file"] = str(report_file)
    print(format_report(report), flush=True)
    return report


def compose_report(args: argparse.Namespace, backbone: Backbone, plan: Plan, seeds: list[int], ctx: dict,
                   runs: list[dict], seconds: dict, cli: dict, noise_map: Path) -> dict:
    """Everything the quickstart measured, as the report's JSON object."""
    first, chance, answers = runs[0], ctx["manifest"]["chance"], ctx["answers"]
    base_dir, mung_dir, shift_q, shift_t = ctx["base_dir"], first["mung"]["dir"], ctx["shift_q"], ctx["shift_t"]
    noise_mode = read_jsonl(first["mung"]["answers"])[0].get("metadata", {}).get("noise_mode")
    world_dir, white_t = ctx["world_dir"], ctx["white_t"]
    report = {
        "backbone": backbone.name,
        "fast": args.fast,
        "seed": args.seed,
        "seeds": seeds,
        "tiny_world": str(world_dir),
        "plan": asdict(plan),
        "rates_chosen_by": None if args.fast else rates_chosen_by(backbone.name),
        "recipes": {"base": backbone.base_recipe, "mung": backbone.mung_recipe, "control": backbone.control_recipe},
        "tuned": backbone.mung_label,
        "base_checkpoint": str(base_dir),
        "checkpoint": str(mung_dir),
        "control_checkpoint": str(first["control"]["dir"]),
        "trainable": trainable_summary(first["mung"]["log"], first["mung"]["logfile"]),
        "control_trainable": trainable_summary(first["control"]["log"], first["control"]["logfile"]),
        "loss": {"base": loss_summary(base_dir), "mung": loss_summary(mung_dir),
                 "control": loss_summary(first["control"]["dir"])},
        "seconds": seconds,
        "chance": chance,
        "base_on_white": None if args.fast else scores_of(answers["base_white"], white_t),
        "before": {"label": "stage-1 base as is (no generator, no noise)", **scores_of(answers["before"], shift_t)},
        "after": {"label": f"MuNG checkpoint (noise: {noise_mode or 'checkpoint default'})", **first["mung"]["scores"]},
        "control": {"label": f"LoRA r{CONTROL_RANK}, no generator, same steps and data",
                    **first["control"]["scores"]},
        "over_seeds": {"after": over_seeds([r["mung"]["scores"] for r in runs]),
                       "control": over_seeds([r["control"]["scores"] for r in runs])},
        "eval_split": "shift_eval (dark noisy backgrounds)",
        "samples": pick_samples(shift_q, shift_t, answers["before"], first["mung"]["answers"], SAMPLES),
        "cli": cli,
        "noise_map": str(noise_map),
        "next": next_steps(backbone, world_dir, base_dir, mung_dir, ctx["out"]),
    }
    truth = read_jsonl(shift_t)
    report["chance_overall"] = sum(chance[t["family"]] for t in truth) / len(truth)
    return report


def next_steps(backbone: Backbone, world: Path, base: Path, mung: Path, out: Path) -> dict[str, str]:
    """Commands that go on from this run's folders."""
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    model = f"--model-path {q(mung)} --model-base {q(base)}"
    answers = q(mung.parent / "answers.jsonl")  # beside this backbone's runs: the next backbone's do not replace it
    return {  # the mung command: bash scripts/install.sh puts it in .venv/bin (source .venv/bin/activate)
        "evaluate": (f"mung eval {model} --question-file {q(world / 'eval/shift_eval_questions.jsonl')} "
                     f"--image-folder {q(world / 'images')} --answers-file {answers} && mung score tiny-world "
                     f"--answers-file {answers} --truth-file {q(world / 'eval/shift_eval_answers.jsonl')}"),
        "chat": f"mung chat {model} --image-file {q(world / 'images/shift_eval/00000.png')}",
        "web demo": f"mung serve web {model}",
        "compare": (f"mung compare --backbone {backbone.name} --plan all --seeds 1 --fast --world {q(world)} "
                    f"--start {q(base)} --out {q(out / 'compare' / backbone.name)}"),
    }


# ----------------------------------------------------------------------------------------------------- report
def rates_line(r: dict) -> str:
    mung, control = r["plan"]["mung"], r["plan"]["control"]
    return (f"  rates        : MuNG {mung['lr']:g}" + (f" (generator {mung['ng_lr']:g})" if mung.get("ng_lr") else "")
            + f", control {control['lr']:g}"
            + (f"; chosen on the validation split by `{r['rates_chosen_by']}`" if r.get("rates_chosen_by") else ""))


def format_report(r: dict) -> str:
    pct = lambda x: f"{100 * x:5.1f}%"  # noqa: E731
    s, tr, ctr, loss = r["seconds"], r["trainable"], r["control_trainable"], r["loss"]
    seeds = r["over_seeds"]["after"]["seeds"]
    w = 13 if seeds > 1 else 7  # "55.3 ± 0.5%" or "55.3%"
    lines = [
        f"MuNG quickstart — {r['backbone']}{' (--fast: plumbing only, numbers mean nothing)' if r['fast'] else ''}",
        f"  stage 1 base : {r['recipes']['base']}, {r['plan']['base']['steps']} steps, white backgrounds, "
        f"mean loss {loss['base']['loss_start_mean']:.3f} -> {loss['base']['loss_end_mean']:.3f}"
        + (f"; white-background eval {pct(r['base_on_white']['overall'])}" if r["base_on_white"] else ""),
        f"  stage 2 MuNG : {r['recipes']['mung']} ({r['tuned']}), {r['plan']['mung']['steps']} steps, dark noisy "
        f"backgrounds, {seeds} seed(s)",
        f"  control      : {r['recipes']['control']} (LoRA r{CONTROL_RANK}, no generator), "
        f"{r['plan']['control']['steps']} steps, the same data",
        rates_line(r),
        f"  trainable    : MuNG {tr['trainable_params']:,} of {tr['total_params']:,} parameters "
        f"({tr['trainable_percent']:.2f}%); control {ctr['trainable_params']:,} ({ctr['trainable_percent']:.2f}%)",
        f"  loss stage 2 : MuNG {loss['mung']['loss_start_mean']:.3f} -> {loss['mung']['loss_end_mean']:.3f}; "
        f"control {loss['control']['loss_start_mean']:.3f} -> {loss['control']['loss_end_mean']:.3f} (mean over the "
        "first / last tenth of the steps)",
        f"  accuracy on {r['eval_split']}, {r['before']['n']} questions "
        f"({', '.join(f'{n} {f}' for f, n in sorted(r['before']['n_per_family'].items()))}):",
        f"    {'family':<10} {'n':>3} {'chance':>7} {'before':>7} {'control':>{w}} {'MuNG':>{w}}",
    ]
    cell = lambda st: (f"{100 * st['mean']:.1f}" + (f" ± {100 * st['std']:.1f}" if st["std"] is not None else "")  # noqa: E731
                       + "%")
    after, control = r["over_seeds"]["after"], r["over_seeds"]["control"]
    for family in sorted(r["before"]["per_family"]):
        lines.append(f"    {family:<10} {r['before']['n_per_family'][family]:>3} {pct(r['chance'][family]):>7} "
                     f"{pct(r['before']['per_family'][family]):>7} {cell(control['per_family'][family]):>{w}} "
                     f"{cell(after['per_family'][family]):>{w}}")
    lines += [
        f"    {'overall':<10} {r['before']['n']:>3} {pct(r['chance_overall']):>7} {pct(r['before']['overall']):>7} "
        f"{cell(control['overall']):>{w}} {cell(after['overall']):>{w}}",
        f"    before = {r['before']['label']}; control = {r['control']['label']}; MuNG = {r['after']['label']}"
        + (f"; mean ± std over {seeds} seeds" if seeds > 1 else ""),
        "  samples (first question of each family):",
    ]
    for x in r["samples"]:
        lines.append(f"    [{x['family']}] {x['question']}  truth {x['truth']!r} | before {x['before']!r} | "
                     f"after {x['after']!r}")
    lines += [
        f"  CLI          : {r['cli']['question'].splitlines()[0]} -> {r['cli']['reply']!r} (truth {r['cli']['truth']!r})",
        f"  noise map    : {r['noise_map']} (per-patch ‖μ‖ of the generator on that image; σ beside it)",
        "  wall time    : " + ", ".join(f"{k} {v:.0f} s" for k, v in s.items()),
        f"  checkpoint   : {r['checkpoint']} (base: {r['base_checkpoint']})",
        f"  report       : {r.get('report_file', '')}",
        "  what to run next (in a shell with .venv active: source .venv/bin/activate):",
    ]
    lines += [f"    {name:<9}: {command}" for name, command in r["next"].items()]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash scripts/quickstart.sh", description=description(__doc__))
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="llava", metavar="NAME",
                        help="llava (default), qwen, or a tiny transformers VLM family through vlm_noise: "
                        + ", ".join(sorted(set(BACKBONES) - {"llava", "qwen"})))
    parser.add_argument("--out", default=str(REPO / "outputs" / "quickstart"),
                        help="output root: <out>/tiny_world and <out>/<backbone>/{base,mung,eval,logs,%s}" % REPORT_NAME)
    parser.add_argument("--tiny-world", default=None, help="use this already built tiny world instead of building one")
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the tiny world to build")
    parser.add_argument("--seed", type=int, default=0, help="training and noise-sampling seed (the first one)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="stage-2 runs (MuNG and control) per seed, reported as mean ± std "
                        "(default: llava 1, qwen 2; --fast 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/MKL threads per process unless OMP_NUM_THREADS is set (default 1)")
    parser.add_argument("--fast", action="store_true", help="a few steps and questions: checks the plumbing only")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        quickstart(args)
    except StepFailed as err:
        print(f"[quickstart] {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
