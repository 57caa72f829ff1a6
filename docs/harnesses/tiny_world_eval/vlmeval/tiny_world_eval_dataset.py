"""VLMEvalKit dataset tiny_world_eval, made by `python -m mung.harnesses.export` (MuNG) from eval_questions.jsonl: 300
questions in tiny_world_eval.tsv (images as base64), read from $LMUData. Scoring (first-word): first word, lower-cased, punctuation stripped (the tiny world's scorer).

In process: dataset = TinyWorldEvalDataset("tiny_world_eval"), then VLMEvalKit's inference (vlmeval.inference.infer_data_job) and
dataset.evaluate(PREDICTIONS). After `run.py --data tiny_world_eval --mode infer` (VLMEvalKit answers the TSV as a custom VQA
dataset, which it cannot score): python tiny_world_eval_dataset.py PREDICTIONS_FILE
"""

import json
import os
import sys

import pandas as pd
from vlmeval.dataset.image_base import ImageBaseDataset
from vlmeval.smp import LMUDataRoot, load

NAME = "tiny_world_eval"

import string  # noqa: F401  (the first-word rule strips string.punctuation)


def normalize_answer(text: str) -> str:
    """The first word, lower-cased, with surrounding punctuation stripped ("Red." -> "red")."""
    words = text.strip().split()
    return words[0].lower().strip(string.punctuation) if words else ""


normalize = normalize_answer


def read_table(path):
    """A predictions file as VLMEvalKit writes it (xlsx, tsv, csv or json), every cell as text: an answer such as
    "None" or "NA" stays that word (pandas' default would read it as a missing value)."""
    if path.endswith(".xlsx"):
        return pd.read_excel(path, dtype=str, keep_default_na=False)
    if path.endswith((".tsv", ".csv")):
        return pd.read_csv(path, sep="\t" if path.endswith(".tsv") else ",", dtype=str, keep_default_na=False)
    return load(path).astype(str)


def score(predictions_file):
    """{"accuracy", "n", "per_category": {category: accuracy}} of a predictions file (columns prediction, answer)."""
    data = read_table(predictions_file)
    data["right"] = [normalize(p) == normalize(a) for p, a in zip(data["prediction"], data["answer"])]
    result = {"accuracy": float(data["right"].mean()), "n": len(data)}
    if "category" in data:
        result["per_category"] = {str(c): float(g["right"].mean()) for c, g in data.groupby("category")}
    return result


class TinyWorldEvalDataset(ImageBaseDataset):
    TYPE = "VQA"
    DATASET_URL = {NAME: ""}  # supported_datasets() names it; its TSV lies in $LMUData, nothing is downloaded

    def load_data(self, dataset):
        path = os.path.join(LMUDataRoot(), dataset + ".tsv")
        if not os.path.isfile(path):
            raise FileNotFoundError(path + " does not exist: set LMUData to the folder holding " + dataset + ".tsv")
        return pd.read_csv(path, sep="\t", dtype={"question": str, "answer": str, "category": str},
                           keep_default_na=False)

    def evaluate(self, eval_file, **judge_kwargs):
        return score(eval_file)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python " + os.path.basename(__file__) + " PREDICTIONS_FILE")
    print(json.dumps(score(sys.argv[1]), indent=2))
