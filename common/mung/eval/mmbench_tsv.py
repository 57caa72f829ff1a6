"""Reading MMBench TSV files (rows with base64 images), shared by model_vqa_mmbench and the converter."""

import csv
import io
import sys

from ..files import read_text

OPTION_LETTERS = ["A", "B", "C", "D"]


def read_mmbench_tsv(path):
    """(header, rows as dicts) of an MMBench TSV; image fields can be megabytes, so the csv limit is lifted."""
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(read_text(path, "the MMBench TSV file (--question-file)"), newline=""),
                            delimiter="\t")
    rows = list(reader)
    header = list(reader.fieldnames or [])
    for col in ("index", "question"):
        if col not in header:
            raise ValueError(f"{path}: MMBench TSV needs an '{col}' column; found {header}")
    return header, rows


def is_missing(value):
    """Empty cells and pandas-style NaN strings count as missing options/hints."""
    return value is None or value.strip() == "" or value.strip().lower() == "nan"


def options_of(row):
    """The present options of a row, in order A, B, C, D."""
    return [row[c] for c in OPTION_LETTERS if c in row and not is_missing(row[c])]
