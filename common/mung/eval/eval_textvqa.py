"""TextVQA accuracy of an answers file (``python -m mung.eval.eval_textvqa``).

Answers are matched to the TextVQA annotation (``TextVQA_0.5.1_val.json``) by (image_id, question), where
image_id is the answer's ``question_id`` and the question is the first line of the answer's ``prompt`` (LLaVA's
question file appends the OCR tokens and the short-answer instruction on later lines); an answer whose
``question_id`` is a TextVQA ``question_id`` matches directly. Score: standard VQA normalisation and the
leave-one-out VQA accuracy over the ten human answers (``--simple-accuracy``: min(#matches/3, 1)).
"""

import argparse
import os

from ..commands import run_command
from ..files import read_json, read_records
from ..help_text import description
from .vqa_normalize import vqa_accuracy

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."


def question_from_prompt(prompt):
    """The question part of a prompt: its first line, without the short-answer instruction."""
    first = prompt.strip().split("\n")[0]
    return first.replace(SHORT_ANSWER_PROMPT, "").strip().lower()


def match_annotations(annotations, results, result_path):
    """Return [(result, annotation)], raising on an answer that matches no annotation."""
    by_image_question = {(a["image_id"], a["question"].strip().lower()): a for a in annotations}
    by_question_id = {a["question_id"]: a for a in annotations if "question_id" in a}
    pairs = []
    for i, result in enumerate(results, start=1):
        key = (result["question_id"], question_from_prompt(result.get("prompt", "")))
        annotation = by_image_question.get(key) or by_question_id.get(result["question_id"])
        if annotation is None:
            raise ValueError(
                f"{result_path}: answer {i} (question_id {result['question_id']!r}) matches no TextVQA annotation "
                "by (image_id, question) or question_id; is it the answers file for this annotation file?"
            )
        pairs.append((result, annotation))
    return pairs


def textvqa_accuracy(annotation_file, result_file, leave_one_out=True):
    """Mean VQA accuracy (0..1) and the number of answers scored."""
    annotations = read_json(annotation_file, expected="TextVQA_0.5.1_val.json (--annotation-file)")["data"]
    results = read_records(result_file, expected="the answers file (--result-file)")
    if not results:
        raise ValueError(f"{result_file}: no answers to score")
    pairs = match_annotations(annotations, results, result_file)
    scores = [vqa_accuracy(r["text"], a["answers"], leave_one_out=leave_one_out) for r, a in pairs]
    return sum(scores) / len(scores), len(scores)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--annotation-file", required=True, help="TextVQA_0.5.1_val.json")
    parser.add_argument("--result-file", help="one answers jsonl")
    parser.add_argument("--result-dir", help="score every .jsonl in this folder")
    parser.add_argument("--simple-accuracy", action="store_true", help="min(#matches/3,1) instead of leave-one-out")
    args = parser.parse_args(argv)
    if not (args.result_file or args.result_dir):
        parser.error("give --result-file or --result-dir")
    files = [args.result_file] if args.result_file else sorted(
        os.path.join(args.result_dir, f) for f in os.listdir(args.result_dir) if f.endswith(".jsonl"))
    for path in files:
        acc, n = textvqa_accuracy(args.annotation_file, path, leave_one_out=not args.simple_accuracy)
        print(f"{os.path.splitext(os.path.basename(path))[0]}\nSamples: {n}\nAccuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    run_command(main)
