"""Memory per GPU of the model states (weights, gradients, optimizer) of MuNG, MuNG+LoRA r32 and full fine-tuning
under DeepSpeed ZeRO-2 / ZeRO-3 (optimizer offload or not), for the real configs (counted on the meta device,
benchmarks/real_configs.py), on 8 GPUs per node. Activations come on top: the GPU check measures them
(benchmarks/gpu_check.py: peak minus weights).

    python -m benchmarks.zero_memory [--gpus 8,16,32] [--out FILE.md] [--update-doc]

DeepSpeed's bf16 mixed precision keeps per parameter: 2 bytes of bf16 weight; per trained parameter also 2 bytes of
gradient and 12 of float32 master weight + Adam moments. ZeRO-2 splits gradients and optimizer state over the GPUs,
ZeRO-3 the weights too. scripts/zero3_offload.json moves the weights and the optimizer to CPU RAM (the GPU keeps the
layers in use and the communication buckets): its column is the CPU RAM each node needs. Frozen weights train
nothing, so under MuNG they are the whole bill unless ZeRO-3 splits them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from benchmarks.real_configs import LARGER, REAL, build_config
from benchmarks.report import Publisher, add_output_flags, check_output_flags, table

WEIGHT_BYTES, GRAD_BYTES, OPTIMIZER_BYTES = 2, 2, 12
LORA_R = 32
MODELS = ("LLaVA-1.5-7B", "Qwen2.5-VL-7B", "Qwen2.5-VL-32B")
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class Counts:
    total: int
    generator: int
    lora: int
    full: int  # --tune full: everything but the vision encoder


def lora_count(text_config, rank: int = LORA_R) -> int:
    """LoRA on every decoder layer's q, k, v, o, gate, up and down projections: rank x (in + out) each."""
    d, inner = text_config.hidden_size, text_config.intermediate_size
    head_dim = getattr(text_config, "head_dim", None) or d // text_config.num_attention_heads
    q, kv = text_config.num_attention_heads * head_dim, text_config.num_key_value_heads * head_dim
    per_layer = (d + q) * 2 + (d + kv) * 2 + (d + inner) * 3
    return rank * per_layer * text_config.num_hidden_layers


def counts(name: str) -> Counts:
    from transformers import AutoModelForImageTextToText

    config = build_config(name, smoke=False)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if any(k in n for k in ("visual.", "vision_tower.")))
    d = config.get_text_config().hidden_size
    return Counts(total, 6 * (d * d + d), lora_count(config.get_text_config()), total - vision)


def per_gpu_bytes(params: int, trained: int, gpus: int, stage: int) -> float:
    """Model-state bytes on each of ``gpus`` GPUs (ZeRO ``stage`` 2 or 3) of a model of ``params`` parameters (added
    ones included), of which ``trained`` train (see the module docstring)."""
    weights = WEIGHT_BYTES * params / (gpus if stage == 3 else 1)
    return weights + (GRAD_BYTES + OPTIMIZER_BYTES) * trained / gpus


def offload_cpu_bytes_per_node(params: int, trained: int, gpus: int) -> float:
    """CPU RAM per node under ZeRO-3 with weights and optimizer offloaded: every partition of the node's GPUs."""
    nodes = max(1, gpus // GPUS_PER_NODE)
    return (WEIGHT_BYTES * params + (GRAD_BYTES + OPTIMIZER_BYTES) * trained) / nodes


def rows_of(name: str, gpu_counts: list[int]) -> list[list]:
    c = counts(name)
    rows = []
    tunes = (("MuNG", c.generator, c.generator), ("MuNG+LoRA r32", c.generator + c.lora, c.generator + c.lora),
             ("full FT", 0, c.full))
    for label, added, trained in tunes:
        cells = []
        for gpus in gpu_counts:
            params = c.total + added
            cells += [f"{per_gpu_bytes(params, trained, gpus, 2) / 2**30:.1f}",
                      f"{per_gpu_bytes(params, trained, gpus, 3) / 2**30:.1f}",
                      f"{offload_cpu_bytes_per_node(params, trained, gpus) / 2**30:.0f}"]
        rows.append([name, f"{c.total / 1e9:.2f} B", label, f"{trained / 1e6:,.1f} M", *cells])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"of: {', '.join([*REAL, *LARGER])}")
    parser.add_argument("--gpus", default="8,16", help="GPU counts in all (8 per node: 8 = one node, 16 = two)")
    add_output_flags(parser)
    args = parser.parse_args(argv)
    check_output_flags(parser, args)
    gpu_counts = [int(g) for g in args.gpus.split(",")]
    rows = [row for name in args.models.split(",") for row in rows_of(name.strip(), gpu_counts)]
    headers = ["model", "params", "tune", "trained"] + [
        f"{gpus} GPUs {what}" for gpus in gpu_counts for what in ("ZeRO-2", "ZeRO-3", "offload: CPU GiB/node")]
    body = ("## Model-state memory per GPU (GiB), DeepSpeed bf16\n\n" + table(headers, rows)
            + "\n\nWeights 2 B/param; each trained param adds 2 B gradient + 12 B float32 master and Adam moments; "
            "ZeRO-2 splits the last two over the GPUs, ZeRO-3 the weights too. 'offload' = scripts/zero3_offload.json "
            f"(weights and optimizer in CPU RAM; {GPUS_PER_NODE} GPUs per node). Activations come on top "
            "(benchmarks/gpu_check.py measures them).")
    Publisher(args).publish("zero_memory", body)


if __name__ == "__main__":
    main()
