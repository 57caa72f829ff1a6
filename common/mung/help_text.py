"""Help texts of the command-line entry points, from their module docstrings.

A docstring's first line often stops mid-sentence ("…; also ``llava_noise.serve.api`` and"); an entry point's
``--help`` description is the docstring's whole first paragraph, joined into one line, with reST's double backticks
shown as single ones.
"""

from __future__ import annotations

import sys


def description(doc: str) -> str:
    """The first paragraph of ``doc`` (up to its first blank line) as one line."""
    paragraph = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    return " ".join(paragraph).replace("``", "`")


def name_the_command() -> None:
    """Under ``python -m package.module``, make argparse's usage line say that instead of the file's name.

    argparse names the program after ``sys.argv[0]``, which ``python -m`` sets to the module's file path
    (``model_vqa_loader.py``, ``__main__.py``): a command a user cannot type. The ``mung`` front sets its own
    words (``mung eval``) before it calls a module, which this leaves alone."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and sys.argv and sys.argv[0].endswith(".py"):
        sys.argv[0] = "python -m " + spec.name.removesuffix(".__main__")
