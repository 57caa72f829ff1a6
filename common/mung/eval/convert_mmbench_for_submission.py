"""MMBench / MMBench-CN answers → submission spreadsheet.

Reads ``--annotation-file`` (the MMBench TSV) and ``<result-dir>/<experiment>.jsonl`` (``model_vqa_mmbench``
output; question_id = the TSV ``index``, one line per question and option rotation: the first answer for an
index is used), writes ``<upload-dir>/<experiment>.xlsx`` (``--format tsv`` for a TSV) with the TSV's columns
minus hint/category/source/image/comment/l2-category and a ``prediction`` column after the options. Circular
evaluation and scoring are done by the MMBench server.
"""

import argparse
import csv
import os

from ..commands import run_command
from ..files import check_output_path, read_records
from ..help_text import description
from .mmbench_tsv import OPTION_LETTERS, is_missing, read_mmbench_tsv
from .xlsx import write_xlsx

DROPPED = ["hint", "category", "source", "image", "comment", "l2-category"]


def submission_table(header, rows, results):
    """(columns, table rows) of the submission."""
    predictions = {}
    for r in results:
        predictions.setdefault(str(r["question_id"]), r["text"])
    columns = [c for c in header if c not in DROPPED]
    options = [c for c in columns if c in OPTION_LETTERS]
    insert_at = columns.index(options[-1]) + 1 if options else len(columns)
    columns.insert(insert_at, "prediction")
    table = []
    for row in rows:
        cells = []
        for c in columns:
            value = predictions.get(row["index"]) if c == "prediction" else row[c]
            if c != "prediction" and is_missing(value):
                value = None
            cells.append(int(value) if c == "index" and value is not None and value.lstrip("-").isdigit() else value)
        table.append(cells)
    return columns, table


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--annotation-file", required=True, help="the MMBench TSV the questions came from")
    parser.add_argument("--result-dir", required=True, help="folder of <experiment>.jsonl (model_vqa_mmbench output)")
    parser.add_argument("--upload-dir", required=True, help="the submission goes to <upload-dir>/<experiment>.xlsx")
    parser.add_argument("--experiment", required=True, help="name of the answers file, without .jsonl")
    parser.add_argument("--format", choices=["xlsx", "tsv"], default="xlsx", help="submission file format")
    args = parser.parse_args(argv)
    answers = os.path.join(args.result_dir, f"{args.experiment}.jsonl")
    dst = os.path.join(args.upload_dir, f"{args.experiment}.{args.format}")
    check_output_path(dst, "--upload-dir", {"--annotation-file": args.annotation_file, "--result-dir": answers})
    header, rows = read_mmbench_tsv(args.annotation_file)
    results = read_records(answers, expected="the answers file <--result-dir>/<--experiment>.jsonl")
    columns, table = submission_table(header, rows, results)
    os.makedirs(args.upload_dir, exist_ok=True)
    if args.format == "xlsx":
        write_xlsx(dst, columns, table)
    else:
        with open(dst, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(table)
    unanswered = sum(1 for row in table if row[columns.index("prediction")] is None)
    print(f"{len(table)} questions, {unanswered} unanswered → {dst}")


if __name__ == "__main__":
    run_command(main)
