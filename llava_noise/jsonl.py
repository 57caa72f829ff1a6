"""Reading and writing JSON-lines files with errors that name the file and line."""

import json
import os


def read_jsonl(path):
    """Return the list of objects in a JSON-lines file; blank lines are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg}); fix or remove that line") from err
    return rows


def read_json(path):
    """json.load with an error that names the file."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); fix the file (a .jsonl file "
                "holds one object per line)"
            ) from err


def index_by(rows, key, path):
    """Map ``row[key]`` → row; duplicate or missing keys are errors naming ``path``."""
    out = {}
    for i, row in enumerate(rows, start=1):
        if key not in row:
            raise ValueError(f"{path}: record {i} has no '{key}' field")
        if row[key] in out:
            raise ValueError(f"{path}: '{key}' {row[key]!r} appears more than once (record {i})")
        out[row[key]] = row
    return out


def ensure_parent(path):
    """Create the folder that will hold ``path``."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


def write_json(path, obj, indent=None):
    ensure_parent(path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)


def write_jsonl(path, rows):
    ensure_parent(path)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
