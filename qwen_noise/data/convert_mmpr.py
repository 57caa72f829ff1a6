"""Convert MMPR-v1.1 (preference data) into supervised training items ``{image, question, answer}``.

    python -m qwen_noise.data.convert_mmpr --meta <meta.json> --out <train.jsonl> [--seed 0]

meta.json maps each source to {root, annotation, repeat_time, length}; ``root`` and ``annotation`` may be relative to
the folder of meta.json. Annotation lines are {image: str | [str], question, chosen, rejected}: the answer is
``chosen``, every image of multi-image items is kept (paths joined with the source's root), ``<image>`` is stripped
from the question (the trainer places the images). ``repeat_time`` as in MMPR/InternVL: below 1 a seeded random
fraction of the source is kept, above 1 the source is repeated (the integer part whole, the fraction sampled).
The output is shuffled with the seed; counts per source are printed.
"""

import argparse
import json
import math
import os
import random
from pathlib import Path

from .dataset import load_records

IMAGE_PLACEHOLDER = "<image>"


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


def apply_repeat_time(items: list[dict], repeat_time: float, rng: random.Random) -> list[dict]:
    """Integer part: whole copies; fractional part: a seeded random subset of that share of the items."""
    if repeat_time <= 0:
        raise ValueError(f"repeat_time must be positive, got {repeat_time}.")
    whole = math.floor(repeat_time)
    extra = round((repeat_time - whole) * len(items))
    return items * whole + rng.sample(items, extra)


def convert(meta_path: str, out_path: str, seed: int = 0) -> dict[str, int]:
    """Write the converted items; returns {source: items written}."""
    base = Path(meta_path).resolve().parent
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
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
        items = apply_repeat_time(items, float(source.get("repeat_time", 1)), rng)
        counts[name] = len(items)
        all_items.extend(items)
    rng.shuffle(all_items)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        for item in all_items:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meta", required=True, help="MMPR meta.json")
    parser.add_argument("--out", required=True, help="output .jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = convert(args.meta, args.out, args.seed)
    for name, count in counts.items():
        print(f"{name}: {count}")
    print(f"total: {sum(counts.values())} -> {args.out}")


if __name__ == "__main__":
    main()
