"""POPE scores per category and averaged (``python -m mung.eval.eval_pope``).

``--annotation-dir`` holds ``coco_pope_<category>.json`` (JSON lines with ``label`` yes/no, as released);
``--question-file`` gives each question's ``category``; answers are matched to labels in order within a
category (how the questions were generated), and the image names must agree where both files carry them.
An answer counts as "no" when its first sentence has the word no/No/not, else "yes" (the POPE rule).
Positive class = "yes".
"""

import argparse
import os

from ..commands import run_command
from ..files import check_output_path, index_by, read_jsonl, read_records, write_json
from ..help_text import description

LABEL_PREFIX = "coco_pope_"


def answer_to_yes_no(text):
    sentence = text.split(".")[0].replace(",", "")
    words = sentence.split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions, labels):
    """Counts and scores for lists of "yes"/"no" predictions and labels (positive = "yes")."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    tp = sum(p == "yes" and l == "yes" for p, l in zip(predictions, labels))
    fp = sum(p == "yes" and l == "no" for p, l in zip(predictions, labels))
    tn = sum(p == "no" and l == "no" for p, l in zip(predictions, labels))
    fn = sum(p == "no" and l == "yes" for p, l in zip(predictions, labels))
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "TP": tp, "FP": fp, "TN": tn, "FN": fn,
        "accuracy": (tp + tn) / total, "precision": precision, "recall": recall, "f1": f1,
        "yes_ratio": (tp + fp) / total,
    }


def read_labels(path):
    labels = []
    for line, row in read_jsonl(path):
        if not isinstance(row, dict) or row.get("label") not in ("yes", "no"):
            found = row.get("label") if isinstance(row, dict) else row
            raise ValueError(f"{path}:{line}: label must be 'yes' or 'no', got {found!r}")
        labels.append(row)
    return labels


def evaluate_pope(annotation_dir, question_file, result_file):
    """{category: metrics} plus "average" (mean of each metric over the categories)."""
    questions = index_by(read_records(question_file, expected="the POPE question file (--question-file)"),
                         "question_id", question_file)
    answers = read_records(result_file, expected="the answers file (--result-file)")
    label_files = sorted(f for f in os.listdir(annotation_dir) if f.startswith(LABEL_PREFIX) and f.endswith(".json"))
    if not label_files:
        raise FileNotFoundError(f"{annotation_dir}: no {LABEL_PREFIX}<category>.json label files")
    for a in answers:
        if a["question_id"] not in questions:
            raise ValueError(f"{result_file}: question_id {a['question_id']!r} is not in {question_file}")
    results = {}
    for name in label_files:
        category = name[len(LABEL_PREFIX):-len(".json")]
        label_path = os.path.join(annotation_dir, name)
        labels = read_labels(label_path)
        cur = [a for a in answers if questions[a["question_id"]].get("category") == category]
        if len(cur) != len(labels):
            raise ValueError(f"category {category}: {len(cur)} answers in {result_file} but {len(labels)} labels in "
                             f"{label_path}; answer every question of the category")
        for i, (a, l) in enumerate(zip(cur, labels), start=1):
            q_image, l_image = questions[a["question_id"]].get("image"), l.get("image")
            if q_image is not None and l_image is not None and q_image != l_image:
                raise ValueError(f"category {category}: answer {i} is about {q_image} but label {i} in {label_path} "
                                 f"is about {l_image}; the files are not in the same order")
        results[category] = pope_metrics([answer_to_yes_no(a["text"]) for a in cur], [l["label"] for l in labels])
    keys = ["accuracy", "precision", "recall", "f1", "yes_ratio"]
    results["average"] = {k: sum(results[c][k] for c in results) / len(results) for k in keys}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--annotation-dir", required=True, help="folder of coco_pope_<category>.json")
    parser.add_argument("--question-file", required=True, help="the question jsonl (gives each question's category)")
    parser.add_argument("--result-file", required=True, help="answers jsonl")
    parser.add_argument("--output-file", help="also write the scores as JSON here")
    args = parser.parse_args(argv)
    check_output_path(args.output_file, "--output-file",
                      {"--question-file": args.question_file, "--result-file": args.result_file})
    results = evaluate_pope(args.annotation_dir, args.question_file, args.result_file)
    for category, m in results.items():
        counts = "" if category == "average" else f"TP {m['TP']} FP {m['FP']} TN {m['TN']} FN {m['FN']}  "
        print(f"{category:>12}: {counts}Acc {m['accuracy']:.3f} Precision {m['precision']:.3f} "
              f"Recall {m['recall']:.3f} F1 {m['f1']:.3f} Yes-ratio {m['yes_ratio']:.3f}")
    if args.output_file:
        write_json(args.output_file, results, indent=2)


if __name__ == "__main__":
    run_command(main)
