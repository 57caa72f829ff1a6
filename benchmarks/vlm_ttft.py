"""Benchmark: time to first token of transformers VLMs with an attached noise generator over the same model without it.

Two views per family:
  measured     - the family's random model at a tiny_world preset (``--preset small``: LLM width 256, 4 layers) on
                 this machine: ``generate(max_new_tokens=1)`` for one image and one question (vision tower, prefill
                 and the first token), median of ``--repeats``, with the generator sampling vs noise mode ``off``
                 (which is the stock model: its hooks return at once), measured in alternation.
  real shapes  - the published width, depth and image-token count of a real checkpoint of the family, on the meta
                 device: floating-point operations of the language model's prefill (image + text tokens) and of the
                 generator (queries: the image tokens; keys: every row of the prompt, masked), counted by
                 ``torch.utils.flop_counter``. ratio = 1 + generator / prefill. The vision tower is left out of the
                 prefill, so the real ratio is lower still. Target: <= 1.03.

    python -m benchmarks.vlm_ttft [--preset small] [--repeats 5] [--families gemma3,qwen3_vl]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, GemmaConfig, Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config
from transformers import Qwen3VLTextConfig

from benchmarks.report import Publisher, add_output_flags, announce, check_output_flags, finished, table
from noise_generator import NoiseGenerator, NoiseGeneratorConfig, attach, noise_mode

TEXT_TOKENS = 128


def llama(hidden, inter, layers, heads, kv, cls=LlamaConfig, **extra):
    return cls(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv, **extra)


# family: (real checkpoint, its language model's config, image tokens of one image and how they come about)
REAL = {
    "llava": ("llava-1.5-7b-hf", llama(4096, 11008, 32, 32, 32), 576, "336 px, 24 x 24 patches"),
    "llava_next": ("llava-v1.6-mistral-7b-hf", llama(4096, 14336, 32, 32, 8, MistralConfig), 2928,
                   "672 px: base 576 + 4 tiles 2304 + 48 newlines"),
    "llava_onevision": ("llava-onevision-qwen2-7b-ov-hf", llama(3584, 18944, 28, 28, 4, Qwen2Config), 1485,
                        "384 px: base 729 + 1 tile 729 + 27 newlines"),
    "qwen2_vl": ("Qwen2-VL-7B-Instruct", llama(3584, 18944, 28, 28, 4, Qwen2Config), 256, "448 px, 2 x 2 merge"),
    "qwen2_5_vl": ("Qwen2.5-VL-7B-Instruct", llama(3584, 18944, 28, 28, 4, Qwen2Config), 256, "448 px, 2 x 2 merge"),
    "qwen3_vl": ("Qwen3-VL-8B-Instruct", llama(4096, 12288, 36, 32, 8, Qwen3VLTextConfig, head_dim=128), 196,
                 "448 px, patch 16, 2 x 2 merge"),
    "gemma3": ("gemma-3-4b-it", llama(2560, 10240, 34, 8, 4, Gemma3TextConfig, head_dim=256), 256, "896 px pooled"),
    "paligemma": ("paligemma-3b-pt-224", llama(2048, 16384, 18, 8, 1, GemmaConfig, head_dim=256), 256,
                  "224 px, 16 x 16 patches"),
    "idefics3": ("Idefics3-8B-Llama3", llama(4096, 14336, 32, 32, 8), 845, "4 tiles + global image, 169 each"),
    "smolvlm": ("SmolVLM-Instruct", llama(2048, 8192, 24, 32, 32), 405, "4 tiles + global image, 81 each"),
    "internvl": ("InternVL3-8B-hf", llama(3584, 18944, 28, 28, 4, Qwen2Config), 256, "one 448 px tile"),
    "mistral3": ("Mistral-Small-3.1-24B", llama(5120, 32768, 40, 32, 8, MistralConfig, head_dim=128), 1296,
                 "1024 px, patch 14, 2 x 2 merge"),
}


def counted_flops(run) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops()


def real_shape_ratio(text_config, image_tokens: int) -> tuple[float, float]:
    """(prefill TFLOP of the language model, ratio with the generator) for one image + TEXT_TOKENS on meta."""
    rows, width = image_tokens + TEXT_TOKENS, text_config.hidden_size
    with torch.device("meta"):
        decoder = AutoModel.from_config(text_config)
        generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=width))
        embeds = torch.empty(1, rows, width)
        queries, keys = [torch.empty(image_tokens, width)], torch.ones(1, rows, dtype=torch.bool)
    prefill = counted_flops(lambda: decoder(inputs_embeds=embeds))
    noise = counted_flops(lambda: generator(queries, embeds, keys, mode="sample"))
    return prefill / 1e12, 1 + noise / prefill


def measured_ttft(world: dict, name: str, preset: str, repeats: int) -> tuple[float, float]:
    """(seconds without, seconds with the generator) to the first token of the family's random model at ``preset``."""
    from PIL import Image

    from tiny_world.families import make_family
    from vlm_noise import prompting

    model, processor = make_family(world["qwen_model"], name, preset)
    model.eval()
    attach(model, NoiseGeneratorConfig(hidden_size=model.config.get_text_config().hidden_size, num_heads=4))
    first = next(iter(Path(world["image_folder"]).rglob("*.png")))
    text = prompting.render(processor, prompting.messages_of([("user", "<image>What color is the shape?")]), True)
    batch = prompting.process(processor, [text], [[Image.open(first).convert("RGB")]])
    timings = {"off": [], "sample": []}
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first round warms up
            for mode in timings:
                with noise_mode(model, mode):
                    start = time.perf_counter()
                    model.generate(**batch, max_new_tokens=1, do_sample=False)
                    timings[mode].append(time.perf_counter() - start)
    return statistics.median(timings["off"][1:]), statistics.median(timings["sample"][1:])


def main() -> None:
    from benchmarks.backbones import load_world
    from tiny_world.family_specs import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=("tiny", "small"),
                        help="model size: tiny (the tests' world) or small")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed prefills per family and mode; the median is reported")
    parser.add_argument("--families", default=None, help="names separated by commas (default: every family)")
    parser.add_argument("--world", default=None, help="a built tiny world (default: one built in the temp folder)")
    add_output_flags(parser)
    args = parser.parse_args()
    check_output_flags(parser, args)
    world = load_world("tiny", args.world or str(Path(tempfile.gettempdir()) / "mung_benchmark_world_tiny_seed0"))
    names = args.families.split(",") if args.families else sorted(REAL)
    rows = []
    start = announce(f"{len(names)} families x {args.repeats} repeats", len(names) * (8 + args.repeats * 0.2) / 60,
                     "a family's build and its prefills on the 2-core CPU")
    for name in names:
        checkpoint, text_config, tokens, how = REAL[name]
        tflop, ratio = real_shape_ratio(text_config, tokens)
        measured = ["–", "–", "–"]
        if name in FAMILIES and not FAMILIES[name].missing_modules():
            off, sample = measured_ttft(world, name, args.preset, args.repeats)
            measured = [f"{off * 1e3:.1f}", f"{sample * 1e3:.1f}", f"{sample / off:.3f}"]
        rows.append([name, *measured, checkpoint, f"{tokens} ({how})", f"{tflop:.2f}", f"{ratio:.4f}"])
        print(" | ".join(map(str, rows[-1])), flush=True)
    headers = ["family", f"{args.preset} TTFT off ms", f"{args.preset} TTFT MuNG ms", f"{args.preset} ratio",
               "real checkpoint", "image tokens", "prefill TFLOP", "real-shape ratio"]
    body = table(headers, rows) + (
        f"\n\nMeasured: the tiny_world family at the `{args.preset}` preset, one image + one question, "
        "`generate(max_new_tokens=1)`, median of "
        f"{args.repeats}; MuNG = generator sampling, off = the stock model. Real shapes: language-model prefill of "
        f"one image + {TEXT_TOKENS} text tokens vs the generator, FLOPs counted on the meta device (vision tower "
        "left out, so the true ratio is lower). Target at real shapes: <= 1.03. Tiny presets have 2-4 layers, "
        "so the generator's share there is far above its share in a real model.")
    Publisher(args).publish(f"vlm_ttft_cpu_{args.preset}",
                            "## MuNG on transformers VLMs: time to first token\n\n" + body)
    finished(start)


if __name__ == "__main__":
    main()
