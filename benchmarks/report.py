"""Shared output for the benchmark scripts: markdown tables, machine description, where the results go.

A benchmark prints its tables; ``--out FILE`` also writes them (with the command and machine) to a file the user
names, replaced only once complete; ``--update-doc`` also rewrites the benchmark's section of the tracked
docs/benchmarks.md (maintainers refreshing the published figures). A rerun to check a figure changes nothing in the
repository. ``announce`` says before a long run how long it will take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import re
import shlex
import sys
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}; torch {torch.__version__}; Python {platform.python_version()}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    return " ".join(["python", "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *map(shlex.quote, sys.argv[1:])])


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """--out FILE and --update-doc (see the module docstring); --no-write, the old way to keep the doc, is accepted
    and changes nothing (the doc is left alone unless --update-doc)."""
    parser.add_argument("--out", default=None, metavar="FILE.md",
                        help="also write the results (Markdown, with the command and machine) to FILE.md, replaced "
                        "only once complete")
    parser.add_argument("--update-doc", action="store_true",
                        help=f"also rewrite this benchmark's section of {DOC.relative_to(DOC.parents[1])} (the "
                        "repository's published figures)")
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)


def check_output_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before anything is measured: --out must be a file this run may create or replace, and not the tracked doc."""
    if not args.out:
        return
    out = Path(args.out)
    if out.resolve() == DOC.resolve():
        parser.error(f"--out {args.out} is the tracked results page; pass --update-doc to rewrite it, or name "
                     "another file")
    if out.is_dir():
        parser.error(f"--out {args.out} is a folder; name a file, e.g. {out / 'results.md'}")
    if not out.parent.resolve().is_dir():
        parser.error(f"--out {args.out}: the folder {out.parent} does not exist; create it or name another file")


class Publisher:
    """Where one run's sections go: printed, --out (every section of the run so far, replaced atomically) and, with
    --update-doc, their sections of docs/benchmarks.md."""

    def __init__(self, args: argparse.Namespace):
        self.out = Path(args.out) if getattr(args, "out", None) else None
        self.update_doc = bool(getattr(args, "update_doc", False))
        self.blocks: list[str] = []

    def publish(self, name: str, body: str) -> None:
        print("\n" + body, flush=True)
        if self.out is not None:
            self.blocks.append(f"`{command_line()}` on {machine()}\n\n{body.strip()}\n")
            replace_file(self.out, "\n".join(self.blocks))
            print(f"Results written to {self.out}", flush=True)
        if self.update_doc:
            write_section(name, body)
            print(f"Section {name} of {DOC} rewritten", flush=True)


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder: a reader never sees a half-written file,
    and an interrupted run leaves the previous one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def announce(what: str, minutes: float, basis: str) -> float:
    """Print before a long run how long it should take; returns the start time for ``finished``."""
    print(f"{what}: about {minutes:.0f} min ({basis}).", flush=True)
    return time.monotonic()


def finished(start: float) -> None:
    print(f"Took {(time.monotonic() - start) / 60:.1f} min.", flush=True)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md, recording the command and machine (only
    with --update-doc: ``Publisher``)."""
    block = f"<!-- {name}:start -->\n`{command_line()}` on {machine()}\n\n{body.strip()}\n<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nWritten by the scripts in `benchmarks/`; each section names its command and machine.\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    replace_file(DOC, text)


def write_json(path: str, data: dict) -> None:
    """Raw measurements for other tools (``python -m mung.compare`` reads them)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
