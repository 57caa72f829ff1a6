"""Shared output for the benchmark scripts: markdown tables, machine description, docs/benchmarks.md sections."""

from __future__ import annotations

import json
import platform
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


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md, recording the command and machine."""
    command = " ".join(["python", "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *map(shlex.quote, sys.argv[1:])])
    block = f"<!-- {name}:start -->\n`{command}` on {machine()}\n\n{body.strip()}\n<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nWritten by the scripts in `benchmarks/`; each section names its command and machine.\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def write_json(path: str, data: dict) -> None:
    """Raw measurements for other tools (``python -m mung.compare`` reads them)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
