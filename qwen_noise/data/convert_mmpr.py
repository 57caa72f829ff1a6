"""Convert MMPR-v1.1 (preference data) into supervised training items ``{image, question, answer}``.

    python -m qwen_noise.data.convert_mmpr --meta <meta.json> --out <train.jsonl> [--seed 0]
        [--repeat-rule internvl|authors]

meta.json maps each source to {root, annotation, repeat_time, length}; ``root`` and ``annotation`` may be relative to
the folder of meta.json. Annotation lines are {image: str | [str], question, chosen, rejected}: the answer is
``chosen``, every image of multi-image items is kept (paths joined with the source's root), ``<image>`` is stripped
from the question (the trainer places the images). The output is shuffled with the seed; counts per source are
printed.

How a source's ``repeat_time`` weights it in the mix (``--repeat-rule``):

- ``internvl`` (default), as MMPR/InternVL apply it: below 1 a seeded random fraction of the source is kept, above 1
  the source is repeated (the integer part whole, the fraction sampled). 10 items at 0.5 / 1 / 2.5 give 5 / 10 / 25.
- ``authors``, the MuNG authors' ``datasets/MMPR_shuffle.py``, i.e. the data of the paper's "one epoch": below 1 a
  random ``int(n * repeat_time)`` items, each taken 10 times; above 1 every item ``int(repeat_time) * 10`` times;
  exactly 1 as is. 10 items at 0.5 / 1 / 2.5 give 50 / 10 / 200.
"""

import argparse
import json
import math
import os
import random
from pathlib import Path

from mung.commands import run_command
from mung.files import check_output_path, write_jsonl

IMAGE_PLACEHOLDER = "<image>"
REPEAT_RULES = ("internvl", "authors")
AUTHORS_EXTRA_REPEATS = 10  # the authors' converter takes every source with repeat_time != 1 ten times more


def resolve(base: Path, path: str) -> str:
    return str(Path(path) if os.path.isabs(path) else (base / path).resolve())


def convert_row(row: dict, root: str, where: str) -> dict:
    for key in ("question", "chosen"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where}: missing text field '{key}'.")
    images = row.get("image") or []
    images = [images] if isinstance(images, str) else list(images)
    question = row["question"].replace(IMAGE_PLACEHOLDER, "").strip()
    item = {"question": question, "answer": row["chosen"].strip()}
    if images:
        item["image"] = [resolve(Path(root), image) for image in images]
    return item


def apply_repeat_time(items: list[dict], repeat_time: float, rng: random.Random, rule: str = "internvl") -> list[dict]:
    """The items a source contributes under ``rule`` (see the module docstring)."""
    if repeat_time <= 0:
        raise ValueError(f"repeat_time must be positive, got {repeat_time}.")
    if rule == "authors":
        return authors_repeat(items, repeat_time, rng)
    whole = math.floor(repeat_time)
    extra = round((repeat_time - whole) * len(items))
    return items * whole + rng.sample(items, extra)


def authors_repeat(items: list[dict], repeat_time: float, rng: random.Random) -> list[dict]:
    """The authors' rule: below 1 a random int(n * repeat_time) subset x10, above 1 x(int(repeat_time) * 10)."""
    if repeat_time < 1:
        return rng.sample(items, int(len(items) * repeat_time)) * AUTHORS_EXTRA_REPEATS
    if repeat_time > 1:
        return items * (int(repeat_time) * AUTHORS_EXTRA_REPEATS)
    return list(items)


def convert(meta_path: str, out_path: str, seed: int = 0, repeat_rule: str = "internvl") -> dict[str, int]:
    """Write the converted items, each source weighted by its repeat_time under ``repeat_rule``; returns
    {source: items written}."""
    if repeat_rule not in REPEAT_RULES:
        raise ValueError(f"repeat_rule {repeat_rule!r} is not supported; choose one of {', '.join(REPEAT_RULES)}.")
    base = Path(meta_path).resolve().parent
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    from .dataset import load_records  # torch: here, so `--help` imports none

    rng = random.Random(seed)
    all_items, counts = [], {}
    for name, source in meta.items():
        for key in ("root", "annotation"):
            if key not in source:
                raise ValueError(f"{meta_path}: source '{name}' has no '{key}'.")
        root = resolve(base, source["root"])
        annotation = resolve(base, source["annotation"])
        rows, lines = load_records(annotation, with_lines=True, expected=f"the annotation file of source '{name}'")
        where = [f"{annotation} line {line}" if line else f"{annotation} item {i}" for i, line in enumerate(lines)]
        items = [convert_row(row, root, at) for row, at in zip(rows, where)]
        items = apply_repeat_time(items, float(source.get("repeat_time", 1)), rng, repeat_rule)
        counts[name] = len(items)
        all_items.extend(items)
    rng.shuffle(all_items)
    write_jsonl(out_path, all_items)  # atomically: an earlier output stays whole until this one is
    return counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta", required=True, help="MMPR meta.json")
    parser.add_argument("--out", required=True, help="output .jsonl")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the output and draws the kept share of sources with repeat_time below 1")
    parser.add_argument(
        "--repeat-rule",
        choices=REPEAT_RULES,
        default="internvl",
        help="internvl: repeat_time as MMPR/InternVL apply it (default). authors: the MuNG authors' mix (sources "
        "with repeat_time != 1 ten times more), so one epoch is the paper's data.",
    )
    args = parser.parse_args(argv)
    check_output_path(args.out, "--out", {"--meta": args.meta})
    counts = convert(args.meta, args.out, args.seed, args.repeat_rule)
    for name, count in counts.items():
        print(f"{name}: {count}")
    print(f"total: {sum(counts.values())} -> {args.out}")


if __name__ == "__main__":
    run_command(main)
