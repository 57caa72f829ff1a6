"""Export a question file as an lmms-eval task and a VLMEvalKit dataset (``python -m mung.harnesses.export``).

Any question file of this project ({question_id, text, image?} per line, images under --image-folder) and, when
given, its truth file ({question_id, answer, family?}) become, under --out:

- ``lmms_eval/NAME/``: an lmms-eval 0.7 task folder (``NAME.yaml`` with a local JSON dataset, ``utils.py``, the
  questions and a copy of each image): ``python -m lmms_eval --include_path OUT/lmms_eval/NAME --tasks NAME ...``;
- ``vlmeval/``: ``NAME.tsv`` (base64 images) for VLMEvalKit's ``$LMUData`` and ``NAME_dataset.py``, a dataset class
  that scores VLMEvalKit's predictions.

Both score with --metric: ``first-word`` (the tiny world's scorer, the default for a tiny world truth file, which
names each question's family) or ``exact`` (the whole answer; the default otherwise). --out must be new, empty, or
an earlier export (it holds this command's list of the files it wrote, which are the only ones it replaces).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..commands import run_command

MARKER = ".mung-export.json"  # the files an export wrote; only these may be replaced by the next one
FORMATS = ("lmms-eval", "vlmeval")
METRIC_NAMES = ("first-word", "exact")  # scorers.METRICS' names, here so that --help imports nothing heavy


def parse_args(argv=None, prog: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a question file as an lmms-eval task folder and a VLMEvalKit custom dataset (TSV + "
                    "a dataset class), both scoring answers like this project's scorer.")
    parser.add_argument("--question-file", required=True, help="questions, one {question_id, text, image?} per line")
    parser.add_argument("--image-folder", default="", help="the folder the questions' image paths are relative to")
    parser.add_argument("--truth-file", help="the answers, one {question_id, answer, family?} per line (the tiny "
                                             "world's eval_answers.jsonl); without it nothing is scored")
    parser.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier export)")
    parser.add_argument("--name", help="the task and dataset name (letters, digits, _; default: from the question "
                                       "file's name)")
    parser.add_argument("--metric", choices=["auto", *METRIC_NAMES], default="auto",
                        help="how a reply is matched with the truth; auto: first-word for a tiny world truth file "
                             "(it names each question's family), exact otherwise")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, of {', '.join(FORMATS)} (default both)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="reply length the lmms-eval task asks for")
    return parser.parse_args(argv)


def task_name(args: argparse.Namespace) -> str:
    name = args.name or re.sub(r"[^A-Za-z0-9_]", "_", Path(args.question_file).stem)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"--name {name!r}: use letters, digits and _ only, starting with a letter (it names a "
                         "Python file and a class).")
    return name


def chosen_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--formats {text!r}: give one or more of {', '.join(FORMATS)}, comma-separated.")
    return formats


def check_out(out: Path, inputs: dict[str, str]) -> list[str]:
    """The files an earlier export wrote into ``out`` (none for a new or empty folder); refuses any other folder and
    an ``out`` that holds an input or lies inside the image folder."""
    for flag, path in inputs.items():
        if not path:
            continue
        real_out, real_in = os.path.realpath(out), os.path.realpath(path)
        if real_in == real_out or real_in.startswith(real_out + os.sep) or real_out.startswith(real_in + os.sep):
            raise ValueError(f"--out {out} and {flag} {path} overlap: the export would write among its own "
                             "inputs. Pass another --out.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder.")
    if not out.exists() or not any(out.iterdir()):
        return []
    marker = out / MARKER
    if not marker.is_file():
        raise ValueError(f"--out {out} is not empty and was not written by this command (no {MARKER}); pass a new "
                         "or empty folder.")
    try:
        written = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{marker} is not this command's list of files; pass a new or empty --out.") from None
    if not isinstance(written, list) or not all(isinstance(f, str) and _inside(f) for f in written):
        raise ValueError(f"{marker} lists a path outside {out}; it is not this command's list. Pass a new or "
                         "empty --out.")
    return written


def _inside(relative: str) -> bool:
    """A relative path that stays inside its folder."""
    norm = os.path.normpath(relative)
    return not os.path.isabs(norm) and norm != ".." and not norm.startswith(".." + os.sep)


def publish(staging: Path, out: Path, earlier: list[str]) -> list[str]:
    """Moves the staged files into ``out``, replacing only files the earlier export wrote (others are refused
    before anything moves), removes the earlier files this export no longer writes, then writes the marker."""
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    for name in files:
        if (out / name).exists() and name not in earlier:
            raise ValueError(f"{out / name} exists and was not written by this command; move it away or pass "
                             "another --out.")
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)
    for name in set(earlier) - set(files):
        (out / name).unlink(missing_ok=True)
    marker = out / MARKER
    marker.with_suffix(".tmp").write_text(json.dumps({"written_by": "mung.harnesses.export", "files": files},
                                                     indent=1) + "\n", encoding="utf-8")
    os.replace(marker.with_suffix(".tmp"), marker)
    return files


def main(argv=None, prog: Optional[str] = None) -> dict:
    """Exports as the flags say; returns {"name", "metric", "count", "files"}. ``prog`` names the command in the
    usage line (by default the command that ran it: ``mung export`` or ``python -m mung.harnesses.export``, set by
    ``run_command``)."""
    args = parse_args(argv, prog)
    from .lmms_eval_task import write_task  # torch comes with these: after parsing, so --help is quick
    from .records import read_rows
    from .vlmeval_dataset import write_dataset

    name, formats, out = task_name(args), chosen_formats(args.formats), Path(args.out)
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens}: give a positive number.")
    earlier = check_out(out, {"--question-file": args.question_file, "--truth-file": args.truth_file,
                              "--image-folder": args.image_folder})
    rows, tiny_world_truth = read_rows(args.question_file, args.image_folder, args.truth_file)
    metric = None if not args.truth_file else (
        args.metric if args.metric != "auto" else "first-word" if tiny_world_truth else "exact")
    source = Path(args.question_file).name
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
            staging = Path(tmp)
            if "lmms-eval" in formats:
                write_task(staging / "lmms_eval" / name, name, rows, args.image_folder, source, metric,
                           args.max_new_tokens)
            if "vlmeval" in formats:
                write_dataset(staging / "vlmeval", name, rows, args.image_folder, source, metric)
            files = publish(staging, out, earlier)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave no empty folder behind
        raise
    print(f"exported {len(rows)} questions of {args.question_file} as {name} ({', '.join(formats)}; "
          f"metric {metric or 'none: no --truth-file'}) to {out}")
    if "lmms-eval" in formats:
        print(f"  lmms-eval: python -m lmms_eval --include_path {out / 'lmms_eval' / name} --tasks {name} ...")
    if "vlmeval" in formats:
        print(f"  VLMEvalKit: LMUData={out / 'vlmeval'} python -m vlmeval.run --data {name} ...; score: python "
              f"{out / 'vlmeval' / (name + '_dataset.py')} PREDICTIONS_FILE")
    return {"name": name, "metric": metric, "count": len(rows), "files": files}


if __name__ == "__main__":
    run_command(main)
