"""GQA exact-match accuracy of a predictions file (``python -m mung.eval.eval_gqa``).

This is the headline "accuracy" of GQA's official eval.py (prediction == answer after
``convert_gqa_for_eval``); the other official metrics (consistency, validity, plausibility, distribution) need
the scene graphs and choices files and are left to that script.
"""

import argparse

from ..commands import run_command
from ..files import read_json
from ..help_text import description


def gqa_accuracy(predictions, questions, predictions_path="predictions"):
    """Fraction of the predictions equal to their question's answer; every prediction must have a question."""
    correct = 0
    for p in predictions:
        qid = str(p["questionId"])
        if qid not in questions:
            raise ValueError(f"{predictions_path}: questionId {qid} is not in the questions file")
        correct += p["prediction"] == questions[qid]["answer"]
    return correct / len(predictions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--predictions", required=True, help="output of convert_gqa_for_eval")
    parser.add_argument("--questions", required=True, help="e.g. testdev_balanced_questions.json")
    args = parser.parse_args(argv)
    predictions = read_json(args.predictions, expected="the output of convert_gqa_for_eval (--predictions)")
    questions = read_json(args.questions, expected="GQA's questions JSON (--questions)")
    acc = gqa_accuracy(predictions, questions, args.predictions)
    print(f"Accuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    run_command(main)
