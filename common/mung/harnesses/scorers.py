"""The answer-matching rules an exported dataset can score with, as source text to embed in the exported files.

The exported ``utils.py`` (lmms-eval) and dataset class (VLMEvalKit) run in the harnesses' own environments, where
this project is not installed; they carry the rule's source, taken from the one function here that defines it, so
a harness scores exactly as ``mung.eval.eval_tiny_world`` does.
"""

from __future__ import annotations

import inspect
from typing import Callable

from tiny_world.scoring import normalize_answer


def whole_answer(text: str) -> str:
    """The whole answer, lower-cased, surrounding white space stripped ("Dark red " -> "dark red")."""
    return text.strip().lower()


# name -> (the rule, what it does in a line). "first-word" is the tiny world's (tiny_world.score_answers).
METRICS: dict[str, tuple[Callable[[str], str], str]] = {
    "first-word": (normalize_answer, "first word, lower-cased, punctuation stripped (the tiny world's scorer)"),
    "exact": (whole_answer, "whole answer, lower-cased, white space stripped"),
}


def metric_source(metric: str) -> str:
    """Python source defining ``normalize(text) -> str`` for ``metric``, with the imports it needs."""
    rule, _ = METRICS[metric]
    return f"import string  # noqa: F401  (the first-word rule strips string.punctuation)\n\n\n" \
           f"{inspect.getsource(rule)}\n\nnormalize = {rule.__name__}\n"
