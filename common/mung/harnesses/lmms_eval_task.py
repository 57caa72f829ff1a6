"""An lmms-eval task folder: ``NAME.yaml`` (a local JSON dataset, ``dataset_path: json`` with ``data_files`` beside
it), ``utils.py`` (image, text and scoring functions), ``NAME.jsonl`` and a copy of each image under ``images/``.

lmms-eval 0.7 reads it with ``--include_path FOLDER --tasks NAME``; its chat models put the image before the text,
the layout this project's backbones are trained on. ``data_files`` is relative: lmms-eval resolves it against the
YAML's folder, so the folder can be moved.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from .records import Row
from .scorers import METRICS, metric_source

UTILS = '''"""lmms-eval task {name}, made by `python -m mung.harnesses.export` (MuNG) from {source}.
Scoring ({metric}): {metric_help}; "accuracy" is the share of questions answered right."""

import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

{normalize}

def doc_to_visual(doc):
    """The question's image in RGB, or none for a text-only question."""
    if not doc.get("image"):
        return []
    with Image.open(os.path.join(HERE, doc["image"])) as image:
        return [image.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The question's text as the question file gives it."""
    return doc["question"]


def process_results(doc, results):
    """{score_doc}"""
    prediction = results[0] if results else ""
    {score_line}
'''
WITH_TRUTH = ('Whether the reply matches the truth under the rule above.',
              'return {"accuracy": float(normalize(prediction) == normalize(doc["answer"]))}')
WITHOUT_TRUTH = ('Without a truth file: whether the question got a non-empty reply (collect the replies with '
                 '--log_samples).',
                 'return {"answered": float(bool(prediction.strip()))}')


def task_yaml(name: str, source: str, count: int, max_new_tokens: int, has_truth: bool) -> str:
    metric = "accuracy" if has_truth else "answered"
    # lmms-eval needs a target on every task; without a truth file the question's id stands in (never scored).
    target = "answer" if has_truth else "question_id"
    return f"""# lmms-eval task made by `python -m mung.harnesses.export` (MuNG) from {source}: {count} questions.
# Run: python -m lmms_eval --include_path THIS_FOLDER --tasks {name} --model ... (see MuNG's docs/serving.md)
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {name}.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: {target}
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  temperature: 0
  do_sample: false
  num_beams: 1
process_results: !function utils.process_results
metric_list:
  - metric: {metric}
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""


def write_task(folder: Path, name: str, rows: list[Row], image_folder: str, source: str, metric: Optional[str],
               max_new_tokens: int) -> None:
    """The task folder ``folder`` (which must not exist yet); ``metric`` None means no truth file."""
    folder.mkdir(parents=True)
    copies: dict[str, str] = {}  # source image -> its copy, relative to the folder (one copy per image)
    records = []
    for row in rows:
        record = {"question_id": row.question_id, "question": row.text, "image": None}
        if row.image:
            original = os.path.realpath(os.path.join(image_folder, row.image))
            if original not in copies:
                # Numbered names: the question file's paths may be absolute or climb out of the image folder.
                copies[original] = f"images/{len(copies):05d}{Path(original).suffix}"
                (folder / "images").mkdir(exist_ok=True)
                shutil.copyfile(original, folder / copies[original])
            record["image"] = copies[original]
        if row.answer is not None:
            record["answer"] = row.answer
        if row.category is not None:
            record["category"] = row.category
        records.append(record)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                          encoding="utf-8")
    (folder / f"{name}.yaml").write_text(task_yaml(name, source, len(rows), max_new_tokens, metric is not None),
                                         encoding="utf-8")
    score_doc, score_line = WITH_TRUTH if metric else WITHOUT_TRUTH
    rule = metric or "exact"
    (folder / "utils.py").write_text(UTILS.format(
        name=name, source=source, metric=metric or "none", metric_help=METRICS[rule][1] if metric else "no truth file",
        normalize=metric_source(rule), score_doc=score_doc, score_line=score_line), encoding="utf-8")
