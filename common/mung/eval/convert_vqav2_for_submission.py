"""Merged VQAv2 answers → EvalAI submission json (``python -m mung.eval.convert_vqav2_for_submission``).

Reads ``<dir>/answers/<split>/<ckpt>/merge.jsonl``, writes ``<dir>/answers_upload/<split>/<ckpt>.json`` with one
``{question_id, answer}`` per question of the test split (``--test-split``, default
``<dir>/llava_vqav2_mscoco_test2015.jsonl``); answers are VQA-normalised, unanswered questions get "".
"""

import argparse
import os

from ..commands import run_command
from ..files import read_records, write_json
from ..help_text import description
from .vqa_normalize import normalize_answer


def vqav2_submission(test_questions, results):
    answered = {r["question_id"]: r["text"] for r in results}
    return [{"question_id": q["question_id"], "answer": normalize_answer(answered[q["question_id"]])
             if q["question_id"] in answered else ""} for q in test_questions]


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--dir", default="./playground/data/eval/vqav2", help="the VQAv2 eval folder")
    parser.add_argument("--ckpt", required=True, help="the checkpoint name under answers/<split>/")
    parser.add_argument("--split", required=True, help="the split name under answers/, e.g. llava_vqav2_mscoco_test-dev2015")
    parser.add_argument("--test-split", help="question jsonl covering the whole test set")
    args = parser.parse_args(argv)
    test_split = args.test_split or os.path.join(args.dir, "llava_vqav2_mscoco_test2015.jsonl")
    src = os.path.join(args.dir, "answers", args.split, args.ckpt, "merge.jsonl")
    dst = os.path.join(args.dir, "answers_upload", args.split, f"{args.ckpt}.json")
    results = read_records(src, expected="the merged answers <--dir>/answers/<--split>/<--ckpt>/merge.jsonl")
    submission = vqav2_submission(read_records(test_split, expected="the test-split question file (--test-split)"),
                                  results)
    missing = sum(1 for s in submission if s["answer"] == "")
    print(f"{len(results)} answers, {len(submission)} questions in the test split, {missing} left empty → {dst}")
    write_json(dst, submission)


if __name__ == "__main__":
    run_command(main)
