"""MME answers jsonl → MME eval-tool result files (``python -m mung.eval.convert_answer_to_mme``).

Reads ``<answers-dir>/<experiment>.jsonl`` (question_id "<subtask>/<image file>", prompt = MME question plus
the short-answer instruction) and the ground truth in ``--data-path`` (MME_Benchmark_release_version:
``<subtask>/[questions_answers_YN/]<image stem>.txt`` with "question<TAB>Yes|No" lines), and writes
``<output-dir>/<experiment>/<subtask>.txt`` with "image<TAB>question<TAB>gt<TAB>prediction" lines, the format
``eval_mme`` (and MME's own calculation.py) reads.
"""

import argparse
import os
from collections import defaultdict

from ..commands import run_command
from ..files import check_output_path, read_records, write_text
from ..help_text import description
from .eval_mme import read_tab_lines

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."


def read_ground_truth(data_path):
    """{(subtask, image stem, question): answer} from an MME release folder."""
    gt = {}
    for subtask in sorted(os.listdir(data_path)):
        sub_dir = os.path.join(data_path, subtask)
        if not os.path.isdir(sub_dir):
            continue
        qa_dir = os.path.join(sub_dir, "questions_answers_YN")
        qa_dir = qa_dir if os.path.isdir(qa_dir) else sub_dir
        for name in sorted(os.listdir(qa_dir)):
            if not name.endswith(".txt"):
                continue
            for question, answer in read_tab_lines(os.path.join(qa_dir, name), ("question", "answer")):
                gt[(subtask, name[:-len(".txt")], question.strip())] = answer.strip()
    if not gt:
        raise FileNotFoundError(f"{data_path}: no MME ground-truth .txt files found")
    return gt


def mme_result_lines(answers, gt, answers_path="answers"):
    """{subtask: ["image\\tquestion\\tgt\\tprediction", ...]} in answer order."""
    lines = defaultdict(list)
    for i, a in enumerate(answers, start=1):
        subtask, image = a["question_id"].split("/")[0], os.path.basename(a["question_id"])
        question = a["prompt"].replace(SHORT_ANSWER_PROMPT, "").strip()
        key = (subtask, os.path.splitext(image)[0], question)
        if key not in gt:
            raise ValueError(f"{answers_path}: answer {i} ({a['question_id']!r}, question {question!r}) has no "
                             "ground truth in the MME folder")
        text = a["text"].replace("\t", " ").replace("\n", " ")
        lines[subtask].append(f"{image}\t{question}\t{gt[key]}\t{text}")
    return dict(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--experiment", required=True, help="the answers file <answers-dir>/<experiment>.jsonl")
    parser.add_argument("--data-path", default="MME_Benchmark_release_version",
                        help="the MME release folder (ground truth per subtask)")
    parser.add_argument("--answers-dir", default="answers", help="folder of the answers file")
    parser.add_argument("--output-dir", default="eval_tool/answers",
                        help="result files go to <output-dir>/<experiment>/<subtask>.txt")
    args = parser.parse_args(argv)
    answers_path = os.path.join(args.answers_dir, f"{args.experiment}.jsonl")
    check_output_path(os.path.join(args.output_dir, args.experiment), "--output-dir",
                      {"--answers-dir": answers_path, "--data-path": args.data_path}, kind="folder")
    answers = read_records(answers_path, expected="the answers file <--answers-dir>/<--experiment>.jsonl")
    lines = mme_result_lines(answers, read_ground_truth(args.data_path), answers_path)
    out_dir = os.path.join(args.output_dir, args.experiment)
    for subtask, rows in lines.items():
        write_text(os.path.join(out_dir, f"{subtask}.txt"), "\n".join(rows) + "\n")
    print(f"wrote {len(lines)} subtask files to {out_dir}")


if __name__ == "__main__":
    run_command(main)
