"""Writing samples in the file formats the trainers and evaluators read.

- LLaVA training JSON: a list of {"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}], "family"}.
- Qwen conversations JSON: the same, with "image" a list for multi-image samples (one <image> per image, in order).
- MMPR-v1.1: meta.json {source: {"root", "annotation", "repeat_time", "length"}} and annotation jsonl lines
  {"image": str | [str], "question", "chosen", "rejected"}. "root" and "annotation" are relative to the folder
  holding meta.json (so the world can be moved).
- LLaVA eval: question jsonl {"question_id", "image", "text", "category"} (as model_vqa_loader reads; the loader
  adds the image token itself) and a ground-truth jsonl {"question_id", "answer", "family"}.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from .splits import Sample
from .vocabulary import FAMILIES, IMAGE_PLACEHOLDER, MULTI_IMAGE_FAMILY


def write_json(path: str, data, indent: int | None = 1) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def conversation_record(sample: Sample) -> dict:
    """One training sample as a LLaVA/Qwen conversation record."""
    turns = []
    for i, qa in enumerate(sample.turns):
        value = qa.prompt
        if i == 0 and sample.images:
            tags = "\n".join([IMAGE_PLACEHOLDER] * len(sample.images))
            value = f"{tags}\n{value}" if sample.image_first else f"{value}\n{tags}"
        turns += [{"from": "human", "value": value}, {"from": "gpt", "value": qa.answer}]
    record: dict = {"id": sample.id}
    if len(sample.images) == 1:
        record["image"] = sample.images[0]
    elif sample.images:
        record["image"] = list(sample.images)
    record["conversations"] = turns
    record["family"] = sample.family
    return record


def llava_records(samples: list[Sample]) -> list[dict]:
    # LLaVA-1.5 takes at most one image per sample.
    return [conversation_record(s) for s in samples if len(s.images) <= 1]


def qwen_records(samples: list[Sample]) -> list[dict]:
    return [conversation_record(s) for s in samples]


# MMPR sources: (name, families, repeat_time). repeat_time < 1 subsamples a source, > 1 repeats it.
MMPR_SOURCES = (
    ("tiny_colour_shape", ("colour", "shape"), 1),
    ("tiny_count_yesno_position", ("count", "yesno", "position"), 0.5),
    ("tiny_multi_image", (MULTI_IMAGE_FAMILY,), 2),
)


def write_mmpr(mmpr_dir: str, image_dir: str, samples: list[Sample]) -> tuple[str, int]:
    """Writes meta.json and one annotation jsonl per source; returns (meta path, annotation lines)."""
    meta, total = {}, 0
    for name, families, repeat_time in MMPR_SOURCES:
        rows = [_preference_row(s) for s in samples if s.family in families and len(s.turns) == 1 and s.images]
        annotation = os.path.join(mmpr_dir, "annotations", f"{name}.jsonl")
        write_jsonl(annotation, rows)
        meta[name] = {
            "root": os.path.relpath(image_dir, mmpr_dir),
            "annotation": os.path.relpath(annotation, mmpr_dir),
            "repeat_time": repeat_time,
            "length": len(rows),
        }
        total += len(rows)
    meta_path = os.path.join(mmpr_dir, "meta.json")
    write_json(meta_path, meta)
    return meta_path, total


def _preference_row(sample: Sample) -> dict:
    qa = sample.turns[0]
    tags = "\n".join([IMAGE_PLACEHOLDER] * len(sample.images))
    image = sample.images[0] if len(sample.images) == 1 else list(sample.images)
    return {"image": image, "question": f"{tags}\n{qa.prompt}", "chosen": qa.answer, "rejected": qa.rejected}


def write_eval(questions_path: str, answers_path: str, samples: list[Sample]) -> None:
    questions, answers = [], []
    for sample in samples:
        if len(sample.turns) != 1 or len(sample.images) != 1 or sample.family not in FAMILIES:
            raise ValueError(f"eval sample {sample.id} must be one single-image question of {FAMILIES}")
        qa = sample.turns[0]
        questions.append({"question_id": sample.id, "image": sample.images[0], "text": qa.prompt,
                          "category": qa.family})
        answers.append({"question_id": sample.id, "answer": qa.answer, "family": qa.family})
    write_jsonl(questions_path, questions)
    write_jsonl(answers_path, answers)
