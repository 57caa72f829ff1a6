"""ScienceQA accuracy of ``model_vqa_science`` answers (``python -m mung.eval.eval_science_qa``).

``--base-dir`` holds ScienceQA's problems.json and pid_splits.json. The chosen option is read from the answer
text: the bare letter ("B"), a letter followed by ". " ("B. ..."), or exactly one "The answer is B."; anything
else (and an unanswered problem) is a failure and counts as wrong. Reports accuracy over the split and over
the problems that have an image (IMG-Accuracy, the number LLaVA reports as SQA-IMG).
"""

import argparse
import os
import re

from ..commands import run_command
from ..files import check_output_path, read_json, read_records, write_json
from ..help_text import description

_ANSWER_IS = re.compile(r"The answer is ([A-Z])\.")


def parse_option(text, options):
    """Letter chosen by ``text`` or None."""
    if text in options:
        return text
    if len(text) >= 3 and text[0] in options and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else None


def score_science_qa(problems, split_ids, predictions, options):
    """Per-problem outcome and totals; ``predictions`` maps problem id → answer text."""
    outcomes = {}
    for pid in split_ids:
        prob = problems[pid]
        text = predictions.get(pid)
        letter = parse_option(text, options) if text is not None else None
        choice = options.index(letter) if letter is not None and options.index(letter) < len(prob["choices"]) else -1
        outcomes[pid] = {"pred_idx": choice, "answer": prob["answer"], "correct": choice == prob["answer"],
                         "has_image": bool(prob.get("image")), "text": text}
    img = [o for o in outcomes.values() if o["has_image"]]
    return {
        "outcomes": outcomes,
        "total": len(outcomes),
        "correct": sum(o["correct"] for o in outcomes.values()),
        "img_total": len(img),
        "img_correct": sum(o["correct"] for o in img),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--base-dir", required=True, help="folder with problems.json and pid_splits.json")
    parser.add_argument("--result-file", required=True, help="answers jsonl (model_vqa_science output)")
    parser.add_argument("--output-file", help="per-problem correct/incorrect lists (json)")
    parser.add_argument("--output-result", help="accuracy and per-problem predicted indices (json)")
    parser.add_argument("--split", default="test", help="the split of pid_splits.json to score")
    parser.add_argument("--options", nargs="+", default=["A", "B", "C", "D", "E"], help="the option letters, in order")
    args = parser.parse_args(argv)
    for flag, output in (("--output-file", args.output_file), ("--output-result", args.output_result)):
        check_output_path(output, flag, {"--result-file": args.result_file})
    problems = read_json(os.path.join(args.base_dir, "problems.json"), expected="--base-dir holding problems.json")
    split_ids = read_json(os.path.join(args.base_dir, "pid_splits.json"),
                          expected="--base-dir holding pid_splits.json")[args.split]
    predictions = {str(r["question_id"]): r["text"] for r in read_records(args.result_file, expected="the answers file (--result-file)")}
    s = score_science_qa(problems, split_ids, predictions, args.options)
    acc = 100 * s["correct"] / s["total"]
    img_acc = 100 * s["img_correct"] / s["img_total"] if s["img_total"] else float("nan")
    print(f"Total: {s['total']}, Correct: {s['correct']}, Accuracy: {acc:.2f}%, IMG-Accuracy: {img_acc:.2f}%")
    if args.output_file:
        write_json(args.output_file, {
            "correct": [pid for pid, o in s["outcomes"].items() if o["correct"]],
            "incorrect": [pid for pid, o in s["outcomes"].items() if not o["correct"]],
        }, indent=2)
    if args.output_result:
        write_json(args.output_result, {
            "acc": acc, "img_acc": img_acc, "correct": s["correct"], "count": s["total"],
            "results": {pid: o["pred_idx"] for pid, o in s["outcomes"].items()},
            "outputs": {pid: o["text"] for pid, o in s["outcomes"].items()},
        }, indent=2)


if __name__ == "__main__":
    run_command(main)
