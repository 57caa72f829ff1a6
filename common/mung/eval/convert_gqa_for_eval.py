"""Answers jsonl → GQA predictions file ``[{questionId, prediction}]``.

Run: ``python -m mung.eval.convert_gqa_for_eval --src merge.jsonl --dst predictions.json``.

The prediction is the answer text with trailing periods removed, lower-cased — what GQA's eval.py expects.
"""

import argparse

from ..commands import run_command
from ..files import check_output_path, read_records, write_json
from ..help_text import description


def gqa_predictions(results):
    return [{"questionId": r["question_id"], "prediction": r["text"].rstrip(".").lower()} for r in results]


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--src", required=True, help="merged answers jsonl")
    parser.add_argument("--dst", required=True, help="output, e.g. testdev_balanced_predictions.json")
    args = parser.parse_args(argv)
    check_output_path(args.dst, "--dst", {"--src": args.src})
    write_json(args.dst, gqa_predictions(read_records(args.src, expected="the merged answers file (--src)")))


if __name__ == "__main__":
    run_command(main)
