"""Benchmark 1: the generator's cost at real shapes, side by side with the reference design and a decoder layer.

For each (width d, image tokens n, text tokens t, batch B) it times, in one process:
  ours       - noise_generator.NoiseGenerator (padded batch, fused attention, no host sync)
  reference  - benchmarks.reference_design (dense [sum n, sum t] mask, per-sample loops with .item())
  layer      - one LlamaDecoderLayer of the real model's width over the same prefill (n + t tokens)
forward and forward+backward (median of --repeats), and peak memory of forward+backward. Ratios: reference/ours,
ours/layer, and the generator's share of a whole prefill extrapolated to the real layer count.

    python -m benchmarks.generator_cost                 # CPU-sized grid (minutes on 2 cores)
    python -m benchmarks.generator_cost --grid full     # the issue's full grid (meant for a GPU)
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from benchmarks.reference_design import ReferenceDesignGenerator
from benchmarks.report import Publisher, add_output_flags, announce, check_output_flags, finished, table
from noise_generator import NoiseGenerator, NoiseGeneratorConfig

# Real backbones: (name, hidden, intermediate, heads, kv heads, layers, image tokens per sample).
MODELS = {
    2048: ("Qwen2.5-VL-3B", 2048, 11008, 16, 2, 36, 324),
    4096: ("LLaVA-1.5-7B", 4096, 11008, 32, 32, 32, 576),
}
GRIDS = {
    # (d, text tokens, batches); image tokens per sample come from MODELS.
    "quick": [(2048, 128, (1, 8, 16)), (4096, 128, (1, 8))],
    "full": [(d, t, (1, 4, 8, 16)) for d in (2048, 4096) for t in (64, 128, 256)],
}


@dataclass(frozen=True)
class Case:
    d: int
    n_image: int
    n_text: int
    batch: int
    device: str
    dtype: str


def make_inputs(case: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dtype, dev = getattr(torch, case.dtype), torch.device(case.device)
    images = [torch.randn(case.n_image, case.d, generator=g).to(dev, dtype) for _ in range(case.batch)]
    text = torch.randn(case.batch, case.n_text, case.d, generator=g).to(dev, dtype)
    mask = torch.ones(case.batch, case.n_text, dtype=torch.bool, device=dev)
    mask[1::2, case.n_text * 3 // 4 :] = False  # every other sample right-padded by a quarter
    return images, text, mask


def build(case: Case, which: str):
    """Returns (module, forward closure) for one contender on this case."""
    torch.manual_seed(0)
    dtype, dev = getattr(torch, case.dtype), torch.device(case.device)
    images, text, mask = make_inputs(case)
    if which == "ours":
        module = NoiseGenerator(NoiseGeneratorConfig(hidden_size=case.d, num_heads=8)).to(dev, dtype).train()
        return module, lambda: torch.stack(module(images, text, mask).image_embeds).sum()
    if which == "reference":
        module = ReferenceDesignGenerator(case.d, 8).to(dev, dtype).train()
        flat_images = torch.cat(images)
        flat_text = text.reshape(-1, case.d)  # the reference keys every non-image token, padding included
        image_counts = torch.full((case.batch,), case.n_image, device=dev)
        text_counts = torch.full((case.batch,), case.n_text, device=dev)
        return module, lambda: module(flat_images, image_counts, flat_text, text_counts).sum()
    name, hidden, inter, heads, kv, layers, _ = MODELS[case.d]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
                         num_key_value_heads=kv, num_hidden_layers=1, attn_implementation="sdpa")
    module = LlamaDecoderLayer(config, layer_idx=0).to(dev, dtype).train()
    rotary = LlamaRotaryEmbedding(config).to(dev)
    seq = case.n_image + case.n_text
    hidden_states = torch.randn(case.batch, seq, hidden, device=dev, dtype=dtype)
    positions = torch.arange(seq, device=dev)[None].expand(case.batch, -1)
    cos_sin = rotary(hidden_states, positions)

    def run():
        out = module(hidden_states, position_embeddings=cos_sin, position_ids=positions)
        return (out[0] if isinstance(out, tuple) else out).sum()

    return module, run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn, device: str, repeats: int, backward: bool) -> float:
    def once():
        if backward:
            fn().backward()
        else:
            with torch.no_grad():
                fn()

    once()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        once()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _peak_in_child(case: Case, which: str, queue) -> None:
    module, fn = build(case, which)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand cached free memory back, so the run's growth shows in RSS
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the resident high-water mark (VmHWM) to the current size
    before = _status_kib("VmRSS")
    fn().backward()
    queue.put((_status_kib("VmHWM") - before) * 1024)


def peak_memory(case: Case, which: str) -> int:
    """Peak bytes allocated by one forward+backward beyond the inputs and weights."""
    if case.device.startswith("cuda"):
        module, fn = build(case, which)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # CPU (Linux): a fresh process per measurement; growth of its resident high-water mark during the run.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_in_child, args=(case, which, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"memory measurement of {which} on {case} failed (exit code {proc.exitcode})")
    return queue.get(timeout=10)


# One repeat of a grid row (ours, reference and one decoder layer, forward and forward+backward) on the 2-core CPU:
# about 7 s per sample at d=2048 (docs/benchmarks.md), growing with d squared; the memory runs add about a fifth.
ROW_SECONDS_PER_SAMPLE = 7.0


def estimated_minutes(args) -> float:
    seconds = sum(ROW_SECONDS_PER_SAMPLE * batch * (d / 2048) ** 2 * (n_text + 128) / 256
                  for d, n_text, batches in GRIDS[args.grid] for batch in batches)
    seconds *= args.repeats * 1.2
    return seconds / 60 if args.device == "cpu" else max(1.0, seconds / 60 / 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="quick",
                        help="which shape grid to time: quick (a few shapes) or the full grid")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device to time on (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per shape; the median is reported")
    add_output_flags(parser)
    args = parser.parse_args()
    check_output_flags(parser, args)
    start = announce(f"grid {args.grid}, {args.repeats} repeats", estimated_minutes(args),
                     "from the times in docs/benchmarks.md, 2-core CPU" if args.device == "cpu" else "GPU, rough")
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")

    time_rows, share_rows, mem = [], [], {}
    for d, n_text, batches in GRIDS[args.grid]:
        name, _, _, _, _, layers, n_image = MODELS[d]
        for batch in batches:
            case = Case(d, n_image, n_text, batch, args.device, dtype)
            t = {}
            for which in ("ours", "reference", "layer"):
                _, fn = build(case, which)
                t[which, "fwd"] = time_it(fn, args.device, args.repeats, backward=False)
                t[which, "fb"] = time_it(fn, args.device, args.repeats, backward=True)
                del fn
            for which in ("ours", "reference"):
                mem[d, n_text, batch, which] = peak_memory(case, which)
            share = t["ours", "fwd"] / (t["layer", "fwd"] * layers + t["ours", "fwd"])
            time_rows.append([
                f"{name} d={d}", n_image, n_text, batch,
                f"{t['ours', 'fwd'] * 1e3:.1f}", f"{t['reference', 'fwd'] * 1e3:.1f}", f"{t['layer', 'fwd'] * 1e3:.1f}",
                f"{t['ours', 'fb'] * 1e3:.1f}", f"{t['reference', 'fb'] * 1e3:.1f}",
                f"{t['reference', 'fwd'] / t['ours', 'fwd']:.2f}", f"{t['ours', 'fwd'] / t['layer', 'fwd']:.2f}",
                f"{100 * share:.2f}%",
                f"{mem[d, n_text, batch, 'ours'] / 2**20:.0f}", f"{mem[d, n_text, batch, 'reference'] / 2**20:.0f}",
            ])
            print(" | ".join(str(c) for c in time_rows[-1]), flush=True)
        if 8 in batches and 16 in batches:
            growth = {w: mem[d, n_text, 16, w] / max(mem[d, n_text, 8, w], 1) for w in ("ours", "reference")}
            share_rows.append([f"{name} d={d}", n_image, n_text, f"{growth['ours']:.2f}×", f"{growth['reference']:.2f}×"])

    headers = ["model", "img tok", "text tok", "batch", "ours fwd ms", "ref fwd ms", "layer fwd ms", "ours f+b ms",
               "ref f+b ms", "ref/ours fwd", "ours/layer fwd", "share of prefill", "ours MiB", "ref MiB"]
    body = table(headers, time_rows)
    if share_rows:
        body += "\n\nPeak forward+backward memory growth from batch 8 to 16 (target ≤ 2.1×):\n\n"
        body += table(["model", "img tok", "text tok", "ours 16/8", "reference 16/8"], share_rows)
    body += ("\n\n'share of prefill' = generator forward / (decoder-layer forward × real layer count + generator "
             "forward): the generator's part of time to first token, ignoring the vision tower (target ≤ 3%).")
    Publisher(args).publish(f"generator_cost_{args.device.split(':')[0]}_{args.grid}",
                            "## Generator cost at real shapes\n\n" + body)
    finished(start)


if __name__ == "__main__":
    main()
