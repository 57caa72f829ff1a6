"""MME scores from eval-tool result files (``python -m mung.eval.eval_mme --results_dir DIR``).

Each ``<subtask>.txt`` has "image<TAB>question<TAB>gt<TAB>prediction" lines, two questions per image. A
prediction is "yes"/"no" if it is exactly that (case-insensitive) or its first four characters contain it
("yes" checked first), else "other" (always wrong). Per subtask: acc = % questions right, acc+ = % images with
every question right, score = acc + acc+. Perception and cognition totals are sums of their subtask scores
(max 2000 and 800); a missing subtask file is reported and left out of the total.
"""

import argparse
import os
from ..commands import run_command
from ..help_text import description

PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]


def parse_yes_no(text):
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def subtask_scores(rows):
    """rows: [(image, gt, prediction)] → {"acc", "acc_plus", "score"} in percent."""
    per_image = {}
    for image, gt, pred in rows:
        gt = gt.strip().lower()
        if gt not in ("yes", "no"):
            raise ValueError(f"ground truth for {image} must be yes/no, got {gt!r}")
        per_image.setdefault(image, []).append(parse_yes_no(pred) == gt)
    right = [r for results in per_image.values() for r in results]
    acc = 100 * sum(right) / len(right)
    acc_plus = 100 * sum(all(results) for results in per_image.values()) / len(per_image)
    return {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}


def read_tab_lines(path, fields):
    """The cells of each non-blank line of an MME text file (its ground truth or a result file); every line must
    have one tab-separated cell per name in ``fields``."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cells = line.rstrip("\n").split("\t")
            if len(cells) != len(fields):
                raise ValueError(f"{path}:{line_no}: expected {len(fields)} tab-separated fields ({', '.join(fields)})")
            rows.append(cells)
    return rows


def read_result_file(path):
    """[(image, gt, prediction)] of an eval-tool result file."""
    return [(image, gt, pred) for image, _, gt, pred in read_tab_lines(path, ("image", "question", "gt", "prediction"))]


def mme_scores(results_dir):
    """{"Perception": {"total", "subtasks": {...}}, "Cognition": {...}, "missing": [...]}."""
    out, missing = {}, []
    for group, names in (("Perception", PERCEPTION), ("Cognition", COGNITION)):
        subtasks = {}
        for name in names:
            path = os.path.join(results_dir, f"{name}.txt")
            if not os.path.exists(path):
                missing.append(name)
                continue
            subtasks[name] = subtask_scores(read_result_file(path))
        out[group] = {"total": sum(s["score"] for s in subtasks.values()), "subtasks": subtasks}
    out["missing"] = missing
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--results_dir", "--results-dir", dest="results_dir", required=True,
                        help="folder of <subtask>.txt result files (convert_answer_to_mme output)")
    args = parser.parse_args(argv)
    scores = mme_scores(args.results_dir)
    for group in ("Perception", "Cognition"):
        print(f"=========== {group} ===========\ntotal score: {scores[group]['total']:.2f}")
        for name, s in scores[group]["subtasks"].items():
            print(f"  {name:<24} score: {s['score']:.2f}  (acc {s['acc']:.2f}, acc+ {s['acc_plus']:.2f})")
    if scores["missing"]:
        print(f"missing subtask files (not counted): {', '.join(scores['missing'])}")


if __name__ == "__main__":
    run_command(main)
