"""SEED-Bench per-type accuracy and upload file (``python -m mung.eval.convert_seed_for_submission``).

``--annotation-file`` is SEED-Bench.json (``question_type`` name→id, ``questions`` with question_id,
question_type_id, answer, data_type). An answer is correct when its text, stripped and without a trailing
period, equals the option letter. Accuracy is reported over all questions, image questions and video
questions; unanswered questions count as wrong and are reported. The upload file has one
``{question_id, prediction}`` per answered question.
"""

import argparse

from ..commands import run_command
from ..files import check_output_path, read_json, read_records, write_jsonl
from ..help_text import description


def option_of(text):
    return text.strip().rstrip(".").strip()


def seed_accuracy(annotation, results, data_type=None):
    """{"per_type": {type name: (correct, total)}, "correct": n, "total": n, "unanswered": n}."""
    answered = {str(r["question_id"]): r for r in results}
    names = {v: k for k, v in annotation["question_type"].items()}
    per_type, unanswered = {}, 0
    for q in annotation["questions"]:
        if data_type is not None and q["data_type"] != data_type:
            continue
        name = names.get(q["question_type_id"], str(q["question_type_id"]))
        correct, total = per_type.get(name, (0, 0))
        r = answered.get(str(q["question_id"]))
        unanswered += r is None
        hit = r is not None and option_of(r["text"]) == q["answer"]
        per_type[name] = (correct + hit, total + 1)
    return {
        "per_type": per_type,
        "correct": sum(c for c, _ in per_type.values()),
        "total": sum(t for _, t in per_type.values()),
        "unanswered": unanswered,
    }


def print_accuracy(title, acc):
    if acc["total"] == 0:
        return
    print(f"=== {title}: {100 * acc['correct'] / acc['total']:.2f}% ({acc['correct']}/{acc['total']}, "
          f"{acc['unanswered']} unanswered)")
    for name, (c, t) in sorted(acc["per_type"].items()):
        print(f"  {name}: {100 * c / t:.2f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--annotation-file", required=True, help="SEED-Bench.json")
    parser.add_argument("--result-file", required=True, help="answers jsonl")
    parser.add_argument("--result-upload-file", required=True, help="upload file to write (jsonl)")
    args = parser.parse_args(argv)
    check_output_path(args.result_upload_file, "--result-upload-file",
                      {"--annotation-file": args.annotation_file, "--result-file": args.result_file})
    annotation = read_json(args.annotation_file, expected="SEED-Bench.json (--annotation-file)")
    results = read_records(args.result_file, expected="the answers file (--result-file)")
    for title, data_type in (("all", None), ("image", "image"), ("video", "video")):
        print_accuracy(title, seed_accuracy(annotation, results, data_type))
    write_jsonl(args.result_upload_file,
                [{"question_id": r["question_id"], "prediction": option_of(r["text"])} for r in results])


if __name__ == "__main__":
    run_command(main)
