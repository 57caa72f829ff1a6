"""A question file (and its truth file) read into the rows every exported dataset is written from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..eval.questions import question_from_row
from ..files import index_by, read_jsonl


@dataclass(frozen=True)
class Row:
    question_id: str | int | float
    text: str
    image: Optional[str]  # as the question file gives it: relative to the image folder
    answer: Optional[str]  # None without a truth file
    category: Optional[str]  # the truth's "family", else the question's "category"


def read_rows(question_file: str, image_folder: str, truth_file: Optional[str]) -> tuple[list[Row], bool]:
    """Every question of ``question_file`` ({question_id, text, image?, category?} per line), with its truth
    ({question_id, answer, family?} per line) when ``truth_file`` is given; each image must exist. Also whether
    the truth is the tiny world's (a "family" on every line)."""
    lines = read_jsonl(question_file, expected="the question file (--question-file)")
    questions = []
    for line, row in lines:
        if not isinstance(row, dict):
            raise ValueError(f"{question_file}:{line}: a question is an object {{question_id, text, image?}}, "
                             f"not a {type(row).__name__}.")
        question = question_from_row(row, question_file, line, image_folder)  # checks the fields' types
        if question.image is not None and not os.path.isfile(question.image):
            raise ValueError(f"{question_file}:{line}: question {row['question_id']!r}: image {question.image} "
                             "does not exist; check --image-folder and the image path.")
        questions.append((line, row))
    index_by([row for _, row in questions], "question_id", question_file)  # ids unique
    truth = _truth_by_id(truth_file, question_file, [row["question_id"] for _, row in questions])
    rows = [Row(row["question_id"], row["text"], row.get("image"),
                truth[row["question_id"]]["answer"] if truth else None,
                (truth[row["question_id"]].get("family") if truth else None) or row.get("category"))
            for _, row in questions]
    return rows, bool(truth) and all("family" in record for record in truth.values())


def _truth_by_id(truth_file: Optional[str], question_file: str, ids: list) -> Optional[dict]:
    if truth_file is None:
        return None
    lines = read_jsonl(truth_file, expected="the truth file (--truth-file)")
    for line, row in lines:
        if not isinstance(row, dict) or not isinstance(row.get("answer"), str):
            raise ValueError(f"{truth_file}:{line}: a truth record is {{question_id, answer, family?}} with "
                             "'answer' a string; fix that line.")
    truth = index_by([row for _, row in lines], "question_id", truth_file)
    missing = [qid for qid in ids if qid not in truth]
    if missing:
        raise ValueError(f"{truth_file} has no answer for question {missing[0]!r} of {question_file} "
                         f"({len(missing)} questions lack one); pass the truth file of these questions.")
    extra = sorted(set(truth) - set(ids), key=str)
    if extra:
        raise ValueError(f"{truth_file} answers question {extra[0]!r}, which {question_file} does not ask "
                         f"({len(extra)} such answers); pass the truth file of these questions.")
    return truth

