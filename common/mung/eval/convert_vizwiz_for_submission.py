"""VizWiz answers → submission json ``[{image, answer}]``.

Every question of ``--annotation-file`` (the question jsonl) must be answered; answers are VQA-normalised.
"""

import argparse

from ..commands import run_command
from ..files import check_output_path, index_by, read_records, write_json
from ..help_text import description
from .vqa_normalize import normalize_answer


def vizwiz_submission(questions, results, result_path="answers"):
    answered = index_by(results, "question_id", result_path)
    missing = [q["question_id"] for q in questions if q["question_id"] not in answered]
    if missing:
        raise ValueError(f"{result_path}: {len(missing)} questions unanswered (first: {missing[0]!r}); "
                         "VizWiz needs an answer for every image — rerun the missing chunks")
    return [{"image": q["image"], "answer": normalize_answer(answered[q["question_id"]]["text"])} for q in questions]


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--annotation-file", required=True, help="question jsonl, e.g. llava_test.jsonl")
    parser.add_argument("--result-file", required=True, help="answers jsonl")
    parser.add_argument("--result-upload-file", required=True, help="submission json to write")
    args = parser.parse_args(argv)
    check_output_path(args.result_upload_file, "--result-upload-file",
                      {"--annotation-file": args.annotation_file, "--result-file": args.result_file})
    questions = read_records(args.annotation_file, expected="the question file (--annotation-file)")
    results = read_records(args.result_file, expected="the answers file (--result-file)")
    write_json(args.result_upload_file, vizwiz_submission(questions, results, args.result_file))


if __name__ == "__main__":
    run_command(main)
