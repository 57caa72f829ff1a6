"""Benchmark 2: one training step side by side - MuNG, MuNG+LoRA r32, LoRA r32, DoRA r32 and full fine-tuning.

Every contender is built through its backbone's own code path (``benchmarks.backbones``) from the same tiny-world
checkpoint and trains on the same batch (the first ``--batch`` image samples of the world's training file, through
the backbone's dataset and collator). One step = forward + backward + optimizer step (the optimizer and parameter
groups the backbone's Trainer creates), then zero_grad. Reported per contender:

  step time   median over ``--steps`` after ``--warmup``; contenders take turns step by step (rotating order), so
              load changes on a shared machine hit them alike; beside the wall time, the process CPU time of the
              step (all threads), which waiting for a busy core does not inflate
  peak memory what training adds on top of the loaded model and batch (gradients, optimizer state, activations):
              CUDA max_memory_allocated on GPU; on CPU the growth of the resident high-water mark of a fresh process
  trainable   trainable parameters and their share of all parameters
and the ratios of step time and memory to LoRA's.

    python -m benchmarks.training_step                          # both backbones, tiny preset, CPU
    python -m benchmarks.training_step --backbone qwen --preset small --batch 8 --steps 30
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from tqdm import tqdm
from transformers import Trainer

from benchmarks.backbones import CONTENDERS, build_llava, build_qwen, load_world
from benchmarks.memory import PeakMeter, run_in_fresh_process
from benchmarks.report import Publisher, add_output_flags, announce, check_output_flags, finished, table, write_json
from mung.training.parameters import count_parameters, optimizer_groups

BACKBONES = ("llava", "qwen")
REFERENCE = "LoRA r32"
# What the memory processes' fork server imports once (not this module: the children run it as their main module).
PRELOAD = ("benchmarks.backbones", "benchmarks.memory", "llava_noise.train.prepare", "llava_noise.train.data",
           "qwen_noise.train.prepare", "qwen_noise.data")


@dataclass
class Setup:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batch: dict[str, Any]


def llava_batch(model, tokenizer, args, batch_size: int) -> dict[str, Any]:
    from llava_noise.train.data import make_supervised_data_module

    model_args, data_args, training_args, _ = args
    module = make_supervised_data_module(tokenizer, data_args, model_args, training_args, model)
    dataset = module["train_dataset"]
    picked = [i for i, record in enumerate(dataset.records) if record.get("image")][:batch_size]
    if len(picked) < batch_size:
        raise ValueError(f"{data_args.data_path} has only {len(picked)} image samples; lower --batch.")
    return module["data_collator"]([dataset[i] for i in picked])


def qwen_batch(processor, args, batch_size: int) -> dict[str, Any]:
    from qwen_noise.data import QwenDataCollator, QwenSupervisedDataset

    _, data_args, _, training_args = args
    dataset = QwenSupervisedDataset(data_args.data_path, processor, image_folder=data_args.image_folder,
                                    model_max_length=training_args.model_max_length, on_bad_sample="raise")
    picked = [i for i, record in enumerate(dataset.records) if isinstance(record.get("image"), str)][:batch_size]
    if len(picked) < batch_size:
        raise ValueError(f"{data_args.data_path} has only {len(picked)} one-image samples; lower --batch.")
    return QwenDataCollator(pad_token_id=processor.tokenizer.pad_token_id)([dataset[i] for i in picked])


def build_setup(backbone: str, manifest: dict, contender: str, batch_size: int, device: str) -> Setup:
    """The contender's model, its Trainer-style optimizer, and the benchmark batch on ``device``."""
    if backbone == "llava":
        model, tokenizer, args = build_llava(manifest, contender, device)
        training_args = args[2]
        overrides = {"noise_generator": args[3].ng_lr, "mm_projector": training_args.mm_projector_lr}
        batch = llava_batch(model, tokenizer, args, batch_size)
    elif backbone == "qwen":
        model, processor, args = build_qwen(manifest, contender, device)
        training_args = args[3]
        overrides = {"noise_generator": args[2].ng_lr}
        batch = qwen_batch(processor, args, batch_size)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    model.train()
    groups = optimizer_groups(model, training_args.weight_decay, overrides)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return Setup(model, optimizer_cls(groups, **optimizer_kwargs), batch)


def train_step(setup: Setup) -> float:
    loss = setup.model(**setup.batch).loss
    loss.backward()
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return loss.item()  # also waits for the device


def step_memory(backbone: str, preset: str, world: Optional[str], contender: str, batch_size: int, steps: int,
                device: str, threads: Optional[int] = None) -> int:
    """Bytes that ``steps`` training steps add on top of the built contender (run it in a fresh process on CPU)."""
    if threads:
        torch.set_num_threads(threads)
    setup = build_setup(backbone, load_world(preset, world), contender, batch_size, device)
    # One forward+backward first (gradients dropped, no optimizer state yet), so one-time runtime set-up (autograd
    # threads, kernel workspaces) is not counted as the contender's memory.
    setup.model(**setup.batch).loss.backward()
    setup.optimizer.zero_grad(set_to_none=True)
    meter = PeakMeter(torch.device(device))
    meter.start()
    for _ in range(steps):
        train_step(setup)
    return meter.peak()


def measure(backbone: str, preset: str, world: Optional[str] = None, batch_size: int = 8, steps: int = 20,
            warmup: int = 3, device: str = "cpu", contenders: tuple[str, ...] = tuple(CONTENDERS),
            memory_steps: int = 3, threads: Optional[int] = None) -> list[dict[str, Any]]:
    """One row per contender: step wall and process-CPU times (s), peak training memory (bytes), trainable and total
    parameters. ``threads`` sets torch's CPU threads (here and in the memory processes); None keeps the default."""
    if threads:
        torch.set_num_threads(threads)
    manifest = load_world(preset, world)
    setups = {name: build_setup(backbone, manifest, name, batch_size, device) for name in contenders}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu_times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for step in tqdm(range(warmup + steps), desc=f"{backbone} {preset} steps", leave=False):
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            train_step(setups[name])
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
        order = order[1:] + order[:1]
    rows = []
    for name in contenders:
        trainable, total = count_parameters(setups[name].model)
        rows.append({"contender": name, "times": times[name], "cpu_times": cpu_times[name], "trainable": trainable,
                     "total": total})
    del setups
    for row in tqdm(rows, desc=f"{backbone} {preset} memory", leave=False):
        args = (backbone, preset, world, row["contender"], batch_size, memory_steps, device, threads)
        if device.startswith("cuda"):
            row["memory"] = step_memory(*args)
        else:
            row["memory"] = run_in_fresh_process(step_memory, *args, preload=PRELOAD)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    by_name = {row["contender"]: row for row in rows}
    reference = by_name.get(REFERENCE)
    ref_time = statistics.median(reference["times"]) if reference else math.nan
    ref_cpu = statistics.median(reference["cpu_times"]) if reference else math.nan
    ref_memory = reference["memory"] if reference else math.nan
    lines = []
    for row in rows:
        median, cpu = statistics.median(row["times"]), statistics.median(row["cpu_times"])
        times = row["times"]
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [median] * 3
        lines.append([
            row["contender"], f"{median * 1e3:.1f}", f"{q1 * 1e3:.1f}–{q3 * 1e3:.1f}", f"{median / ref_time:.2f}",
            f"{cpu * 1e3:.1f}", f"{cpu / ref_cpu:.2f}",
            f"{row['memory'] / 2**20:.1f}", f"{row['memory'] / ref_memory:.2f}",
            f"{row['trainable']:,}", f"{100 * row['trainable'] / row['total']:.2f}%",
        ])
    headers = ["contender", "step ms (median)", "IQR ms", "time / LoRA", "CPU ms", "CPU / LoRA", "train peak MiB",
               "memory / LoRA",
               "trainable params", "trainable share"]
    return table(headers, lines)


# Seconds of one training step at batch 8 on the 2-core CPU (LLaVA's LoRA r32 row in docs/benchmarks.md), plus the
# per-contender build; with the memory measurement's fresh process, about 5 more steps per contender.
STEP_SECONDS = {"tiny": 0.3, "small": 2.3}
BUILD_SECONDS = 10


def estimated_minutes(args, backbones: int) -> float:
    if args.device.startswith("cuda"):
        return 1
    step = STEP_SECONDS[args.preset] * args.batch / 8
    return backbones * len(CONTENDERS) * ((args.steps + args.warmup + 5) * step + BUILD_SECONDS) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=(*BACKBONES, "both"), default="both",
                        help="which backbone to time (default: both)")
    parser.add_argument("--preset", choices=("tiny", "small"), default="tiny",
                        help="model size: tiny (the tests' world) or small")
    parser.add_argument("--world", default=None, help="tiny-world folder (default: built once under the temp dir)")
    parser.add_argument("--batch", type=int, default=8, help="samples per training step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per contender (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device to time on (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 gives steadier numbers on a busy shared machine")
    add_output_flags(parser)
    parser.add_argument("--json", default=None,
                        help="also write the raw measurements (one backbone) as JSON here, e.g. for mung.compare")
    args = parser.parse_args()
    if args.json and args.backbone == "both":
        parser.error("--json takes one backbone; pass --backbone llava or qwen")
    check_output_flags(parser, args)
    publisher = Publisher(args)

    backbones = BACKBONES if args.backbone == "both" else (args.backbone,)
    start = announce(f"{len(backbones)} backbone(s) x {len(CONTENDERS)} contenders",
                     estimated_minutes(args, len(backbones)),
                     "from the step times in docs/benchmarks.md, 2-core CPU; a GPU takes far less")
    for backbone in backbones:
        load_before = os.getloadavg()[0]
        rows = measure(backbone, args.preset, args.world, args.batch, args.steps, args.warmup, args.device,
                       threads=args.threads)
        load_after = os.getloadavg()[0]
        if args.json:
            write_json(args.json, {"rows": rows, "load_average": [load_before, load_after], "batch": args.batch})
        memory_note = (
            "CUDA max_memory_allocated during 3 steps minus the allocation before them"
            if args.device.startswith("cuda")
            else "growth of the resident high-water mark of a fresh process during 3 steps, after one untimed "
            "forward+backward (runtime set-up)"
        ) + " on top of the loaded model and batch: gradients, optimizer state, activations."
        body = (
            f"## Training step: {backbone}, {args.preset} preset, batch {args.batch}, {args.device}\n\n"
            + render(rows)
            + f"\n\nMedian of {args.steps} steps after {args.warmup} warm-up steps (IQR = 25th–75th percentile); "
            f"forward + backward + optimizer step, float32. 'CPU ms' = process CPU time of a step (all threads; "
            f"not inflated by waiting for a busy core, but it counts spin-waiting). 'train peak' = {memory_note} "
            f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores."
            "\n\nMuNG needs the full backward through the frozen LLM (the generator sits below it), as LoRA does; it "
            "saves LoRA's adapter matmuls, their gradients and optimizer state, and adds the generator's "
            "cross-attention and six d×d projections over the image tokens only. DoRA adds a weight-norm per "
            "adapted layer and step."
        )
        publisher.publish(f"training_step_{backbone}_{args.preset}_{args.device.split(':')[0]}", body)
    finished(start)


if __name__ == "__main__":
    main()
