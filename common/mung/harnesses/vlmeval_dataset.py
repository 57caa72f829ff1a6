"""A VLMEvalKit custom dataset: ``NAME.tsv`` (one row per question: index, the image as base64, question, answer,
category, question_id) for ``$LMUData``, and ``NAME_dataset.py``, a small dataset class that scores it.

VLMEvalKit (``ms-vlmeval`` 0.0.20) builds any ``$LMUData/NAME.tsv`` without options A, B as its own
``CustomVQADataset``, which answers the questions but cannot score them; the class here reads the same TSV and
scores a predictions file (``evaluate``), in process or from the command line after ``run.py --mode infer``.
The image bytes go in as they are (a PNG stays a PNG; VLMEvalKit writes them back out as PNG files).
"""

from __future__ import annotations

import base64
import csv
import io
import os
from pathlib import Path
from typing import Optional

from .records import Row
from .scorers import METRICS, metric_source

DATASET = '''"""VLMEvalKit dataset {name}, made by `python -m mung.harnesses.export` (MuNG) from {source}: {count}
questions in {name}.tsv (images as base64), read from $LMUData. Scoring ({metric}): {metric_help}.

In process: dataset = {cls}("{name}"), then VLMEvalKit's inference (vlmeval.inference.infer_data_job) and
dataset.evaluate(PREDICTIONS). After `run.py --data {name} --mode infer` (VLMEvalKit answers the TSV as a custom VQA
dataset, which it cannot score): python {name}_dataset.py PREDICTIONS_FILE
"""

import json
import os
import sys

import pandas as pd
from vlmeval.dataset.image_base import ImageBaseDataset
from vlmeval.smp import LMUDataRoot, load

NAME = "{name}"

{normalize}

def read_table(path):
    """A predictions file as VLMEvalKit writes it (xlsx, tsv, csv or json), every cell as text: an answer such as
    "None" or "NA" stays that word (pandas' default would read it as a missing value)."""
    if path.endswith(".xlsx"):
        return pd.read_excel(path, dtype=str, keep_default_na=False)
    if path.endswith((".tsv", ".csv")):
        return pd.read_csv(path, sep="\\t" if path.endswith(".tsv") else ",", dtype=str, keep_default_na=False)
    return load(path).astype(str)


def score(predictions_file):
    """{{"accuracy", "n", "per_category": {{category: accuracy}}}} of a predictions file (columns prediction, answer)."""
    data = read_table(predictions_file)
    data["right"] = [normalize(p) == normalize(a) for p, a in zip(data["prediction"], data["answer"])]
    result = {{"accuracy": float(data["right"].mean()), "n": len(data)}}
    if "category" in data:
        result["per_category"] = {{str(c): float(g["right"].mean()) for c, g in data.groupby("category")}}
    return result


class {cls}(ImageBaseDataset):
    TYPE = "VQA"
    DATASET_URL = {{NAME: ""}}  # supported_datasets() names it; its TSV lies in $LMUData, nothing is downloaded

    def load_data(self, dataset):
        path = os.path.join(LMUDataRoot(), dataset + ".tsv")
        if not os.path.isfile(path):
            raise FileNotFoundError(path + " does not exist: set LMUData to the folder holding " + dataset + ".tsv")
        return pd.read_csv(path, sep="\\t", dtype={{"question": str, "answer": str, "category": str}},
                           keep_default_na=False)

    def evaluate(self, eval_file, **judge_kwargs):
        return score(eval_file)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python " + os.path.basename(__file__) + " PREDICTIONS_FILE")
    print(json.dumps(score(sys.argv[1]), indent=2))
'''


def class_name(name: str) -> str:
    """``tiny_world_eval`` -> ``TinyWorldEvalDataset``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) + "Dataset"


def write_dataset(folder: Path, name: str, rows: list[Row], image_folder: str, source: str,
                  metric: Optional[str]) -> None:
    """``folder/NAME.tsv`` and ``folder/NAME_dataset.py`` (``folder`` must not exist yet); every question needs an
    image (VLMEvalKit's image datasets drop rows without one) and, to be scored, a truth file (``metric``)."""
    if metric is None:
        raise ValueError("the VLMEvalKit dataset needs the answers: pass --truth-file (or --formats lmms-eval to "
                         "export the lmms-eval task alone).")
    for row in rows:
        if not row.image:
            raise ValueError(f"question {row.question_id!r} has no image: VLMEvalKit's image datasets drop such "
                             "rows; remove it or pass --formats lmms-eval.")
    folder.mkdir(parents=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")  # quotes the questions' line breaks
    writer.writerow(["index", "image", "question", "answer", "category", "question_id"])
    for index, row in enumerate(rows):
        data = Path(os.path.join(image_folder, row.image)).read_bytes()
        writer.writerow([index, base64.b64encode(data).decode("ascii"), row.text, row.answer,
                         row.category or "", row.question_id])
    (folder / f"{name}.tsv").write_text(buffer.getvalue(), encoding="utf-8")
    (folder / f"{name}_dataset.py").write_text(DATASET.format(
        name=name, source=source, count=len(rows), metric=metric, metric_help=METRICS[metric][1],
        cls=class_name(name), normalize=metric_source(metric)), encoding="utf-8")
