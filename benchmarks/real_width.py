"""Benchmark: prefill and training-step times at each backbone's real width, heads and image-token count, on this CPU.

Each backbone's language model is built at its published width, heads, MLP size and image-token count with a few
decoder layers (``--layers``, default 2) and random weights (float32, SDPA attention; nothing downloaded), and
measured side by side in one run, alternating, median of ``--repeats``:

  prefill      the decoder on one prompt (image tokens + ``--text-tokens`` text tokens) as ``inputs_embeds``, with
               and without the generator before it (the sync-free padded call every backbone uses: queries are the
               image rows of the [1, T, d] batch, keys the text rows). The vision tower and the LM head (one token
               at prefill) are left out, which makes the ratio higher, not lower.
               TTFT ratio at the real depth = 1 + generator / (per-layer time x depth), per-layer = decoder / layers.
  compiled     the generator's forward under ``torch.compile(fullgraph=True)`` (inductor) against eager.
  training     one step (forward, backward, AdamW) with the base frozen: MuNG (the generator trains, the gradient
               flows through every layer to the image rows) vs LoRA r32 on every linear layer of the decoder; time
               and the peak resident memory the step adds (sampled from /proc), each in a fresh process.
               Real-depth ratio ~ 1 + (MuNG - LoRA) / (LoRA / layers x depth).

    python -m benchmarks.real_width --out real_width.md [--repeats 3] [--train-repeats 2] [--layers 2]
        [--backbones llava,qwen,gemma3] [--no-compile]

It prints how long it expects to take before it starts, writes its Markdown table to ``--out`` (atomically, only
once complete) and to the screen, and changes nothing else.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue as queue_module
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.report import machine, table
from noise_generator import NoiseGenerator, NoiseGeneratorConfig


@dataclass(frozen=True)
class RealShape:
    checkpoint: str
    config_class: str  # in transformers
    width: int
    intermediate: int
    depth: int
    heads: int
    kv_heads: int
    head_dim: int
    image_tokens: int
    why: str


REAL = {
    "llava": RealShape("LLaVA-1.5-7B", "LlamaConfig", 4096, 11008, 32, 32, 32, 128, 576, "336 px, 24 x 24 patches"),
    "qwen": RealShape("Qwen2.5-VL-3B", "Qwen2Config", 2048, 11008, 36, 16, 2, 128, 1024,
                      "896 px, 14 px patches, 2 x 2 merge"),
    "gemma3": RealShape("Gemma 3 4B", "Gemma3TextConfig", 2560, 10240, 34, 8, 4, 256, 256, "896 px pooled to 16 x 16"),
}
START_METHOD = "spawn"  # a fresh interpreter per training measurement: its memory starts clean (None: this process)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_decoder(shape: RealShape, layers: int) -> torch.nn.Module:
    """The language model's decoder (no embedding use, no LM head) with ``layers`` layers and random weights."""
    import transformers

    config = getattr(transformers, shape.config_class)(
        hidden_size=shape.width, intermediate_size=shape.intermediate, num_hidden_layers=layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        vocab_size=256, max_position_embeddings=8192)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.AutoModel.from_config(config).eval().requires_grad_(False)


def build_generator(shape: RealShape) -> NoiseGenerator:
    torch.manual_seed(1)
    config = NoiseGeneratorConfig(hidden_size=shape.width, num_heads=shape.heads, init="normal", init_std=0.02)
    return NoiseGenerator(config)


def prompt(shape: RealShape, text_tokens: int):
    """(inputs_embeds [1, T, d], image rows [1, T], key rows [1, T]): a few text tokens, the image, the question."""
    total = shape.image_tokens + text_tokens
    image = torch.zeros(1, total, dtype=torch.bool)
    image[0, 5 : 5 + shape.image_tokens] = True
    torch.manual_seed(2)
    return torch.randn(1, total, shape.width) * 0.02, image, ~image


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, run in alternation after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


@torch.no_grad()
def measure_prefill(shape: RealShape, layers: int, text_tokens: int, repeats: int, compile_generator: bool) -> dict:
    decoder, generator = build_decoder(shape, layers), build_generator(shape).eval()
    embeds, image, keys = prompt(shape, text_tokens)

    def noised():
        return generator(embeds, embeds, keys, mode="sample", image_mask=image).image_embeds

    result = alternate({
        "decoder": lambda: decoder(inputs_embeds=embeds),
        "with_generator": lambda: decoder(inputs_embeds=noised()),
        "generator": noised,
    }, repeats)
    if compile_generator:
        compiled = torch.compile(generator.forward, fullgraph=True)
        start = time.perf_counter()
        compiled(embeds, embeds, keys, mode="sample", image_mask=image)
        result["compile_s"] = time.perf_counter() - start
        result.update({f"{k}_eager_vs": v for k, v in alternate({
            "eager": noised,
            "compiled": lambda: compiled(embeds, embeds, keys, mode="sample", image_mask=image),
        }, repeats).items()})
    return result


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms from /proc/self/statm (bytes)."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())
        self.added = self.peak - self.start


def training_step_worker(shape: RealShape, method: str, layers: int, text_tokens: int, repeats: int, queue) -> None:
    """In a fresh process: median step time and the peak memory one step adds, for ``method`` (mung | lora)."""
    decoder = build_decoder(shape, layers).train()
    embeds, image, keys = prompt(shape, text_tokens)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        decoder = get_peft_model(decoder, LoraConfig(r=32, lora_alpha=64, target_modules=LORA_TARGETS))
        trainable = [p for p in decoder.parameters() if p.requires_grad]

        def forward():
            return decoder(inputs_embeds=embeds).last_hidden_state
    else:
        generator = build_generator(shape).train()
        trainable = list(generator.parameters())

        def forward():
            noised = generator(embeds, embeds, keys, mode="sample", image_mask=image).image_embeds
            return decoder(inputs_embeds=noised).last_hidden_state
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    def step():
        loss = forward()[0, -text_tokens:].float().pow(2).mean()  # the answer rows; no LM head
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocates the optimizer state
    with PeakRSS() as memory:
        step()
    times = [timed(step) for _ in range(repeats)]
    queue.put({"step_s": statistics.median(times), "peak_added_mb": memory.added / 2**20,
               "trainable": sum(p.numel() for p in trainable)})


def measure_training(shape: RealShape, layers: int, text_tokens: int, repeats: int) -> dict:
    out = {}
    if START_METHOD is None:
        for method in ("mung", "lora"):
            queue = queue_module.SimpleQueue()
            training_step_worker(shape, method, layers, text_tokens, repeats, queue)
            out[method] = queue.get()
        return out
    context = multiprocessing.get_context(START_METHOD)
    for method in ("mung", "lora"):
        queue = context.Queue()
        worker = context.Process(target=training_step_worker, args=(shape, method, layers, text_tokens, repeats, queue))
        worker.start()
        out[method] = queue.get(timeout=3600)
        worker.join()
    return out


# --- how long it will take -------------------------------------------------------------------------------------------
def layer_flops(shape: RealShape, tokens: int) -> float:
    attention = shape.width * shape.head_dim * (2 * shape.heads + 2 * shape.kv_heads)
    mlp = 3 * shape.width * shape.intermediate
    return 2 * tokens * (attention + mlp) + 4 * tokens * tokens * shape.heads * shape.head_dim


def generator_flops(shape: RealShape, tokens: int) -> float:
    return 2 * tokens * 6 * shape.width**2 + 4 * tokens * tokens * shape.width


def matmul_rate() -> float:
    """Float32 matmul FLOP/s this process gets now (the machine may be shared)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.5:
        a @ b
        count += 1
    return count * 2 * 1024**3 / (time.perf_counter() - start)


def expected_seconds(names: list[str], args: argparse.Namespace, rate: float) -> float:
    """FLOPs of the whole plan over the measured matmul rate, plus fixed costs (process start, compile)."""
    total = 0.0
    for name in names:
        shape = REAL[name]
        tokens = shape.image_tokens + args.text_tokens
        decoder = args.layers * layer_flops(shape, tokens)
        generator = generator_flops(shape, tokens)
        runs = 1 + args.repeats
        total += runs * (2 * decoder + 2 * generator) / rate
        if args.compile:
            total += 2 * runs * generator / rate + 90  # inductor's compile at this width: about a minute and a half
        total += (2 + args.train_repeats) * 3 * (2 * decoder + generator) / rate + 2 * 15  # training; 2 processes
    return total


# --- the report --------------------------------------------------------------------------------------------------------
def secs(seconds: float) -> str:
    return f"{seconds:.3g}"


def layers_text(layers: int) -> str:
    return f"{layers} layer{'s' if layers != 1 else ''}"


def rows_for(name: str, prefill: dict, training: dict, layers: int) -> tuple[list, list]:
    shape = REAL[name]
    per_layer = prefill["decoder"] / layers
    ttft_ratio = 1 + prefill["generator"] / (per_layer * shape.depth)
    prefill_row = [
        f"{shape.checkpoint} ({name})", f"{shape.width} / {shape.heads} / {shape.image_tokens}",
        secs(prefill["decoder"]), secs(prefill["with_generator"]),
        f"{prefill['with_generator'] / prefill['decoder']:.3f}", secs(prefill["generator"]), secs(per_layer), shape.depth,
        f"**{ttft_ratio:.3f}**",
    ]
    if "compiled_eager_vs" in prefill:
        prefill_row += [f"{secs(prefill['eager_eager_vs'])} / {secs(prefill['compiled_eager_vs'])} "
                        f"({prefill['compile_s']:.0f} s to compile)"]
    mung, lora = training["mung"], training["lora"]
    step_ratio = 1 + (mung["step_s"] - lora["step_s"]) / (lora["step_s"] / layers * shape.depth)
    training_row = [
        f"{shape.checkpoint} ({name})", f"{mung['step_s']:.2f}", f"{lora['step_s']:.2f}",
        f"{mung['step_s'] / lora['step_s']:.2f}", f"{step_ratio:.2f}",
        f"{mung['peak_added_mb']:.0f}", f"{lora['peak_added_mb']:.0f}",
        f"{mung['trainable'] / 1e6:.1f} M", f"{lora['trainable'] / 1e6:.2f} M",
    ]
    return prefill_row, training_row


def report(results: dict, args: argparse.Namespace, load: tuple, elapsed: float) -> str:
    prefill_rows, training_rows = [], []
    for name, (prefill, training) in results.items():
        prefill_row, training_row = rows_for(name, prefill, training, args.layers)
        prefill_rows.append(prefill_row)
        training_rows.append(training_row)
    built = layers_text(args.layers)
    prefill_headers = ["backbone", "width / heads / image tokens", f"prefill, {built} (s)", "+ generator (s)",
                       f"ratio at {built}", "generator (s)", "per layer (s)", "real depth", "TTFT ratio at real depth"]
    if args.compile:
        prefill_headers.append("generator eager / compiled (s)")
    training_headers = ["backbone", "MuNG step (s)", "LoRA r32 step (s)", f"MuNG / LoRA at {built}",
                        "at real depth (est.)", "MuNG peak added (MiB)", "LoRA peak added (MiB)",
                        "MuNG trainable", f"LoRA trainable ({built})"]
    command = "python -m benchmarks.real_width " + " ".join(sys.argv[1:])
    return "\n".join([
        f"`{command}` on {machine()}; load average {load[0]:.1f} before, {load[1]:.1f} after (2 cores shared); "
        f"{args.repeats} repeats ({args.train_repeats} per training step), medians; {args.text_tokens} text tokens; {elapsed / 60:.1f} min in all.", "",
        table(prefill_headers, prefill_rows), "",
        table(training_headers, training_rows), "",
    ])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Markdown file the results table is written to (only this one)")
    parser.add_argument("--backbones", default=",".join(REAL), help=f"comma-separated, of {', '.join(REAL)}")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers built (the real depth is extrapolated)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--train-repeats", type=int, default=2, help="timed training steps per method (median)")
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens of the prompt besides the image")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled generator")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    unknown = [n for n in names if n not in REAL]
    if unknown or not names:
        parser.error(f"--backbones: unknown {unknown}; choose from {', '.join(REAL)}")
    if min(args.layers, args.repeats, args.train_repeats, args.text_tokens) < 1:
        parser.error("--layers, --repeats, --train-repeats and --text-tokens must be at least 1")
    out = Path(args.out)
    if out.is_dir() or not out.resolve().parent.is_dir():
        parser.error(f"--out {args.out}: give a file in an existing folder")
    return args, names


def main(argv=None) -> str:
    from mung.files import write_text

    args, names = parse_args(argv)
    minutes = expected_seconds(names, args, matmul_rate()) / 60
    load_before = os.getloadavg()[0]
    print(f"Expect about {minutes:.0f} min (load average {load_before:.1f} now; more if the machine gets busier).",
          flush=True)
    start, results = time.perf_counter(), {}
    for name in names:
        print(f"{name}: prefill ...", flush=True)
        prefill = measure_prefill(REAL[name], args.layers, args.text_tokens, args.repeats, args.compile)
        print(f"{name}: training steps ...", flush=True)
        results[name] = (prefill, measure_training(REAL[name], args.layers, args.text_tokens, args.train_repeats))
        print(json.dumps({name: results[name]}), flush=True)
    text = report(results, args, (load_before, os.getloadavg()[0]), time.perf_counter() - start)
    write_text(args.out, text)
    print(text)
    return text


if __name__ == "__main__":
    from mung.commands import run_command

    run_command(main)
