"""Scoring single-word answers against the ground truth, per question family."""

from __future__ import annotations

import json
import string
from collections import Counter


def normalize_answer(text: str) -> str:
    """The first word, lower-cased, with surrounding punctuation stripped ("Red." -> "red")."""
    words = text.strip().split()
    return words[0].lower().strip(string.punctuation) if words else ""


def score_answers(answers_jsonl: str, ground_truth_jsonl: str) -> dict:
    """Accuracy of an answers file (LLaVA model_vqa_loader output: {"question_id", "text"}; an "answer" field is
    accepted too) against a ground-truth file ({"question_id", "answer", "family"}).

    Returns {"overall", "per_family": {family: accuracy}, "n", "n_per_family", "missing"}; a question without an
    answer counts as wrong and is counted in "missing".
    """
    truth = {row["question_id"]: row for row in _read_jsonl(ground_truth_jsonl)}
    predicted: dict = {}
    for line_no, row in enumerate(_read_jsonl(answers_jsonl), start=1):
        qid = row.get("question_id")
        if qid not in truth:
            raise ValueError(f"{answers_jsonl} line {line_no}: question_id {qid!r} is not in {ground_truth_jsonl}")
        if qid in predicted:
            raise ValueError(f"{answers_jsonl} line {line_no}: question_id {qid!r} is answered twice")
        text = row.get("text", row.get("answer"))
        if not isinstance(text, str):
            raise ValueError(f"{answers_jsonl} line {line_no}: no 'text' (or 'answer') string field")
        predicted[qid] = text

    total, correct = Counter(), Counter()
    for qid, row in truth.items():
        family = row["family"]
        total[family] += 1
        if qid in predicted and normalize_answer(predicted[qid]) == normalize_answer(row["answer"]):
            correct[family] += 1
    n = sum(total.values())
    return {
        "overall": sum(correct.values()) / n if n else 0.0,
        "per_family": {family: correct[family] / total[family] for family in total},
        "n": n,
        "n_per_family": dict(total),
        "missing": len(truth) - len(predicted),
    }


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
