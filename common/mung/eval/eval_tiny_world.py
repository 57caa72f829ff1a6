"""Accuracy of an answers file on the tiny world's eval split (``python -m mung.eval.eval_tiny_world``).

A thin front end over ``tiny_world.score_answers`` (first word, lower-cased, punctuation stripped, compared
with the single-word truth): prints overall and per-family accuracy and, with ``--output-file``, writes them
as JSON. Unanswered questions count as wrong and are reported.
"""

import argparse

from ..commands import run_command
from ..files import check_output_path, write_json
from ..help_text import description


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--answers-file", required=True, help="model_vqa_loader output")
    parser.add_argument("--truth-file", required=True, help="the tiny world's eval_answers.jsonl")
    parser.add_argument("--output-file", help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    check_output_path(args.output_file, "--output-file",
                      {"--answers-file": args.answers_file, "--truth-file": args.truth_file})
    from tiny_world import score_answers

    scores = score_answers(args.answers_file, args.truth_file)
    print(f"overall: {100 * scores['overall']:.2f}% of {scores['n']} questions ({scores['missing']} unanswered)")
    for family, acc in sorted(scores["per_family"].items()):
        print(f"  {family:<10} {100 * acc:6.2f}%  (n={scores['n_per_family'][family]})")
    if args.output_file:
        write_json(args.output_file, scores, indent=2)
    return scores


if __name__ == "__main__":
    run_command(main)
