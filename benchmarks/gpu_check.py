"""The GPU check: the first run of MuNG's GPU paths on one card, at the real size of LLaVA-1.5-7B, Qwen2.5-VL-3B and
Gemma 3 4B (random weights from their real configs, benchmarks/real_configs.py; nothing is downloaded), in bf16 with
SDPA attention (flash-attention 2 when the package is installed), in one Markdown table.

It measures:

- training step time and peak memory (weights included) of MuNG, LoRA r32, MuNG+LoRA r32, and full fine-tuning of
  the 3B: batch 4, one image + 128 text tokens each, gradient checkpointing as the recipes, torch AdamW;
- TTFT and TPOT (one image + 128 tokens, 32 new tokens, greedy) of the stock model and with the generator sampling;
- MuNG+QLoRA r32: the model saved, reloaded 4-bit NF4 by bitsandbytes (the recipes' --bits 4 settings), one step;
- a DeepSpeed ZeRO-3 start on one GPU (MuNG, the model built partitioned): start-up time, step time, peak memory.

    python -m benchmarks.gpu_check --out gpu_check.md                  # every model (estimate: 6-7 min, one H100)
    python -m benchmarks.gpu_check --models Qwen2.5-VL-3B --out q.md    # one model
    python -m benchmarks.gpu_check --smoke --out smoke.md               # CPU: tiny widths, same code (a test runs it)

--update-doc also puts the table into docs/benchmarks.md. A part that fails becomes a row saying why; the exit
status is 1 then. Parts not started within --max-minutes (7.5) are skipped, a row each: the first model's parts and
the ZeRO-3 start run first.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

import torch

from benchmarks.memory import PeakMeter
from benchmarks.real_configs import REAL, build_config, dummy_batch
from benchmarks.report import Publisher, add_output_flags, announce, check_output_flags, finished, machine, table

BATCH = 4
TEXT_TOKENS = 128
NEW_TOKENS = 32
LORA_R = 32
FULL_FT = ("Qwen2.5-VL-3B",)
HEADERS = ["model", "what", "step / TTFT ms", "TPOT ms", "peak GiB", "note"]


@dataclass
class Settings:
    device: torch.device
    dtype: torch.dtype
    attention: str
    smoke: bool
    steps: int
    warmup: int
    repeats: int


# Gemma 3's image tokens attend to each other both ways (a custom mask flash-attention cannot take): SDPA always.
SDPA_ONLY = ("Gemma-3-4B",)


def attention_implementation(device: torch.device, name: str = "") -> str:
    if device.type == "cuda" and name not in SDPA_ONLY and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def new_model(name: str, s: Settings):
    """The random-weight model of ``name`` on the device, in the check's dtype and attention."""
    from transformers import AutoModelForImageTextToText

    config = build_config(name, s.smoke)
    torch.manual_seed(0)
    with torch.device(s.device):
        model = AutoModelForImageTextToText.from_config(config, dtype=s.dtype,
                                                        attn_implementation=attention_implementation(s.device, name))
    model.config.get_text_config().use_cache = False
    return model


def tuned(model, tune: str):
    """``model`` made ready to train as ``--tune`` ``tune`` (noise | lora | noise_lora | full) of the generic recipes:
    a new generator (8 heads), LoRA r32 on the language model's linears, gradient checkpointing."""
    from mung.training.adapters import LoraSettings, add_lora
    from noise_generator import NoiseGeneratorConfig, attach, module_name_of
    from vlm_noise.train.args import ModelArguments
    from vlm_noise.train.prepare import set_trainable, train_generator

    args = ModelArguments(model_name_or_path="random", tune=tune, lora_r=LORA_R, lora_alpha=LORA_R)
    if args.uses_generator:
        hidden = model.config.get_text_config().hidden_size
        attach(model, NoiseGeneratorConfig(hidden_size=hidden, num_heads=8 if hidden >= 256 else 4))
    set_trainable(model, args)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.uses_lora:
        decoder = module_name_of(model, model.get_decoder())
        model = add_lora(model, args.lora_target_regex(decoder), LoraSettings(r=LORA_R, alpha=LORA_R, dropout=0.05))
        model.enable_input_require_grads()
        train_generator(model)
    return model.train()


def timed_steps(model, batch: dict, s: Settings) -> list[float]:
    """Seconds of each timed AdamW step (forward, backward, update) after the warm-up ones."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    times = []
    for step in range(s.warmup + s.steps):
        sync(s.device)
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(s.device)
        if step >= s.warmup:
            times.append(time.perf_counter() - start)
    return times


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f}"


def train_row(name: str, label: str, tune: str, s: Settings) -> list:
    meter = PeakMeter(s.device)
    meter.start()
    model = tuned(new_model(name, s), tune)
    batch = dummy_batch(model.config, BATCH, TEXT_TOKENS, True, s.device, s.dtype, s.smoke)
    times = timed_steps(model, batch.inputs, s)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = [name, f"train {label}", f"{statistics.median(times) * 1e3:.1f}", "–", gib(meter.peak()),
           f"batch {BATCH} x ({batch.image_tokens} image + {TEXT_TOKENS} text tokens); {trainable:,} trained"]
    del model, batch
    free_memory(s.device)
    return row


def generation_times(model, inputs: dict, s: Settings, new_tokens: int) -> float:
    """Median seconds of ``generate`` with ``new_tokens`` greedy tokens (at least one)."""
    times = []
    for repeat in range(s.repeats + 1):
        sync(s.device)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        sync(s.device)
        if repeat:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_rows(name: str, s: Settings) -> list[list]:
    """TTFT and TPOT of the stock model (generator off) and of MuNG sampling, one image + 128 tokens, batch 1."""
    from noise_generator import NoiseGeneratorConfig, attach, noise_mode

    meter = PeakMeter(s.device)
    meter.start()
    model = new_model(name, s).eval()
    model.config.get_text_config().use_cache = True
    hidden = model.config.get_text_config().hidden_size
    attach(model, NoiseGeneratorConfig(hidden_size=hidden, num_heads=8 if hidden >= 256 else 4))
    batch = dummy_batch(model.config, 1, TEXT_TOKENS, False, s.device, s.dtype, s.smoke)
    rows, base = [], None
    for label, mode in (("generate, generator off", "off"), ("generate, MuNG sampling", "sample")):
        with noise_mode(model, mode):
            ttft = generation_times(model, batch.inputs, s, 1)
            tpot = (generation_times(model, batch.inputs, s, NEW_TOKENS) - ttft) / (NEW_TOKENS - 1)
        base = base or (ttft, tpot)
        note = f"{batch.image_tokens} image + {TEXT_TOKENS} text tokens, {NEW_TOKENS} new"
        if mode != "off":
            note += f"; TTFT x{ttft / base[0]:.3f}, TPOT x{tpot / base[1]:.3f} of off"
        rows.append([name, label, f"{ttft * 1e3:.1f}", f"{tpot * 1e3:.2f}", gib(meter.peak()), note])
    del model, batch
    free_memory(s.device)
    return rows


def qlora_row(name: str, s: Settings) -> list:
    """MuNG + QLoRA r32: the random model saved, reloaded 4-bit NF4 (double quantisation, bf16 compute, the vision
    side and the head unquantised: the generic recipe's --bits 4), prepared for k-bit training, one timed phase."""
    from transformers import AutoModelForImageTextToText

    from mung.loading import quantization_config
    from mung.training.adapters import prepare_quantized
    from vlm_noise.adapter import QUANTIZATION_SKIP

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        new_model(name, s).save_pretrained(folder)
        free_memory(s.device)
        meter = PeakMeter(s.device)
        meter.start()
        start = time.perf_counter()
        model = AutoModelForImageTextToText.from_pretrained(
            folder, dtype=s.dtype, attn_implementation=attention_implementation(s.device, name),
            device_map={"": str(s.device)},
            quantization_config=quantization_config(4, s.dtype, QUANTIZATION_SKIP))
        loaded = time.perf_counter() - start
    model.config.get_text_config().use_cache = False
    model = tuned(prepare_quantized(model, gradient_checkpointing=True), "noise_lora")
    batch = dummy_batch(model.config, BATCH, TEXT_TOKENS, True, s.device, s.dtype, s.smoke)
    times = timed_steps(model, batch.inputs, s)
    row = [name, "train MuNG+QLoRA r32 (4-bit)", f"{statistics.median(times) * 1e3:.1f}", "–", gib(meter.peak()),
           f"batch {BATCH}; 4-bit load {loaded:.0f} s"]
    del model, batch
    free_memory(s.device)
    return row


def zero3_config(hidden: int) -> dict:
    """scripts/zero3.json with its "auto" values filled as the Trainer fills them, bf16 on a GPU, one rank."""
    import json
    from pathlib import Path

    config = json.loads((Path(__file__).resolve().parents[1] / "scripts" / "zero3.json").read_text())
    zero = config["zero_optimization"]
    zero.update(reduce_bucket_size=hidden * hidden, stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
                stage3_param_persistence_threshold=10 * hidden)
    config.update(train_micro_batch_size_per_gpu=BATCH, train_batch_size=BATCH, gradient_accumulation_steps=1,
                  fp16={"enabled": False}, bf16={"enabled": torch.cuda.is_available()})
    return config


def open_one_rank_group(device: torch.device, config: dict) -> None:
    from mung.training.distributed import prepare_cpu_deepspeed

    if device.type != "cuda":
        prepare_cpu_deepspeed(config)
        return
    import deepspeed

    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", os.environ.get("MASTER_PORT", "29561"))):
        os.environ.setdefault(key, value)
    deepspeed.init_distributed(dist_backend="nccl", auto_mpi_discovery=False)


def fill_random(model) -> None:
    """Random values for a model built under zero.Init, where transformers skips its weight initialisation (a
    checkpoint would be loaded over it): one gathered tensor at a time, N(0, 0.02), finite whatever memory held."""
    import deepspeed

    for parameter in model.parameters():
        with deepspeed.zero.GatheredParameters([parameter], modifier_rank=0):
            with torch.no_grad():
                parameter.normal_(0.0, 0.02)


def zero3_row(name: str, s: Settings) -> list:
    """MuNG under DeepSpeed ZeRO-3 on one device: the model built partitioned (zero.Init through transformers), the
    generator attached partitioned, deepspeed.initialize with torch AdamW, timed steps."""
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    config = zero3_config(build_config(name, s.smoke).get_text_config().hidden_size)
    open_one_rank_group(s.device, config)
    meter = PeakMeter(s.device)
    meter.start()
    start = time.perf_counter()
    keep = HfDeepSpeedConfig(config)  # noqa: F841 (while it lives, from_config builds under zero.Init)
    try:
        return zero3_steps(name, s, config, meter, start)
    finally:
        del keep
        unset_hf_deepspeed_config()  # the parts after this one build whole models again
        free_memory(s.device)


def zero3_steps(name: str, s: Settings, config: dict, meter: PeakMeter, start: float) -> list:
    """The ZeRO-3 row: build (partitioned), engine, timed steps; ``start`` = when the start-up began."""
    import deepspeed

    model = new_model(name, s)
    fill_random(model)
    model = tuned(model, "noise")
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(trainable, lr=1e-5), config=config)
    started = time.perf_counter() - start
    batch = dummy_batch(model.config, BATCH, TEXT_TOKENS, True, s.device, s.dtype, s.smoke)
    times = []
    for step in range(s.warmup + s.steps):
        sync(s.device)
        begin = time.perf_counter()
        loss = engine(**batch.inputs).loss
        engine.backward(loss)
        engine.step()
        sync(s.device)
        times.append(time.perf_counter() - begin)
    row = [name, "train MuNG, DeepSpeed ZeRO-3 (1 device)", f"{statistics.median(times[s.warmup:]) * 1e3:.1f}", "–",
           gib(meter.peak()), f"start-up {started:.1f} s; loss finite: {bool(torch.isfinite(loss))}"]
    engine.destroy()
    return row


def parts_of(name: str) -> list[tuple[str, object]]:
    """(label, function returning rows) of every measurement of ``name``, in table order."""
    contenders = [("MuNG", "noise"), ("LoRA r32", "lora"), ("MuNG+LoRA r32", "noise_lora")]
    if name in FULL_FT:
        contenders.append(("full fine-tuning", "full"))
    parts = [(f"train {label}", lambda s, label=label, tune=tune: [train_row(name, label, tune, s)])
             for label, tune in contenders]
    parts.append(("generate", lambda s: latency_rows(name, s)))
    parts.append(("QLoRA", lambda s: [qlora_row(name, s)]))
    return parts


def planned_parts(models: list[str], zero3: bool) -> list[tuple[str, str, object]]:
    """(model, label, part) in running order: the first model's parts, the ZeRO-3 start on it, then the others."""
    planned = [(name, label, part) for name in models for label, part in parts_of(name)]
    if zero3:
        first = len(parts_of(models[0]))
        planned.insert(first, (models[0], "ZeRO-3", lambda s: [zero3_row(models[0], s)]))
    return planned


def run_part(name: str, label: str, part, s: Settings) -> tuple[list[list], bool]:
    """The part's rows, or one row saying why it failed (its traceback printed)."""
    start = time.perf_counter()
    try:
        rows = part(s)
    except Exception as err:  # a failed part is a finding of the check: reported in the table, the rest goes on
        traceback.print_exc()
        free_memory(s.device)
        reason = str(err).splitlines()[0][:140] if str(err) else type(err).__name__
        return [[name, label, "–", "–", "–", f"FAILED: {type(err).__name__}: {reason}"]], False
    print(f"  {name} {label}: {time.perf_counter() - start:.1f} s", flush=True)
    return rows, True


def settings_from(args: argparse.Namespace) -> Settings:
    device = torch.device(args.device)
    default = "bfloat16" if device.type == "cuda" else "float32"
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype or default]
    if args.smoke:
        return Settings(device, dtype, attention_implementation(device), True, steps=2, warmup=1, repeats=1)
    return Settings(device, dtype, attention_implementation(device), False, steps=5, warmup=2, repeats=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(REAL), help=f"comma-separated, of: {', '.join(REAL)}")
    parser.add_argument("--smoke", action="store_true", help="tiny widths and 2 layers (the CPU test of this code)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device to run on (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                        help="default: bfloat16 on a GPU, float32 on CPU")
    parser.add_argument("--no-zero3", action="store_true", help="leave out the DeepSpeed ZeRO-3 start")
    parser.add_argument("--max-minutes", type=float, default=7.5,
                        help="parts not started by then are skipped (a row each says so); default 7.5")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    check_output_flags(parser, args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in REAL]
    if unknown:
        parser.error(f"--models {','.join(unknown)}: not one of {', '.join(REAL)}")
    if not args.smoke and not args.device.startswith("cuda"):
        parser.error("the full-size check needs a GPU (--device cuda); on CPU run --smoke")
    s = settings_from(args)
    start = announce(f"GPU check of {', '.join(models)}", 0.3 if s.smoke else 2.0 * len(models) + 0.5,
                     "CPU smoke" if s.smoke else "estimate for one H100: model builds, steps, a 4-bit reload each")
    rows, ok = [], True
    for name, label, part in planned_parts(models, not args.no_zero3):
        if time.monotonic() - start > args.max_minutes * 60:
            rows.append([name, label, "–", "–", "–", f"skipped: past --max-minutes {args.max_minutes:g}"])
            continue
        part_rows, part_ok = run_part(name, label, part, s)
        rows += part_rows
        ok &= part_ok
    body = render(rows, s)
    Publisher(args).publish(f"gpu_check_{'smoke' if s.smoke else s.device.type}", body)
    finished(start)
    return 0 if ok else 1


def render(rows: list[list], s: Settings) -> str:
    size = "SMOKE (tiny widths, 2 layers: checks the code, not the figures)" if s.smoke else "real configs"
    attention = s.attention + (f" ({', '.join(SDPA_ONLY)}: sdpa)" if s.attention != "sdpa" else "")
    return (f"## GPU check: {size}, {str(s.dtype).replace('torch.', '')}, attention {attention}\n\n"
            + table(HEADERS, rows)
            + f"\n\nRandom weights; training rows: median of {s.steps} steps after {s.warmup} warm-up, AdamW over the "
            f"trained parameters (weights and optimizer state in {str(s.dtype).replace('torch.', '')}, no float32 "
            "master copy), gradient checkpointing; peak "
            "= the most device memory allocated during the row, weights included. Generation rows: batch 1, greedy, "
            f"median of {s.repeats}; TTFT = generate(1 token), TPOT = (generate({NEW_TOKENS}) - TTFT) / "
            f"{NEW_TOKENS - 1}. Machine: {machine()}.")


if __name__ == "__main__":
    sys.exit(main())
