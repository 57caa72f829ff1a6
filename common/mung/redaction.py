"""Secrets kept out of every command line the project records or prints (lock files, busy-folder messages, logged
commands of the quickstart and comparison runners, run records).

One rule, ``redact_argv``: the value of a flag whose name says it holds a secret (``token``, ``key``, ``password``,
``secret``, ``credential``: ``--hub_token hf_x``, ``--foo_api_key=x``), the value of an environment-style
``X_TOKEN=x`` word, and any word that looks like a known kind of secret wherever it stands (Hugging Face ``hf_…``,
OpenAI ``sk-…``, GitHub ``ghp_…``, AWS ``AKIA…``) become ``***``. Flag names stay, so a reader still sees which
flags were passed; what the user typed for them does not.
"""

from __future__ import annotations

import re
import shlex
from typing import Iterable, Sequence

HIDDEN = "***"
# A flag or variable name that holds a secret: a whole word of it is one of these (``--hub_token``, ``API_KEY``,
# ``--db-password``), so ``--max_new_tokens`` or ``--mm_use_im_patch_token``'s neighbours are not caught by accident.
_SECRET_WORDS = r"(?:token|key|apikey|password|passwd|pwd|secret|credentials?|auth)"
_SECRET_NAME = re.compile(rf"(?:^|[_\-.]){_SECRET_WORDS}(?:$|[_\-.])", re.IGNORECASE)
# Flags that say "token" or "key" about something that is not a secret.
_NOT_SECRET = re.compile(r"tokens?_?(?:id|ids|length|limit|count)|key_?(?:mask|field|name)|use_im_\w*token",
                         re.IGNORECASE)
_SECRET_VALUE = re.compile(r"\b(?:hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
                           r"AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9\-]{10,})")
_ENV_WORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


def is_secret_name(name: str) -> bool:
    """True for a flag or variable name that holds a secret (``--hub_token``, ``HF_TOKEN``, ``--foo-api-key``)."""
    bare = name.lstrip("-")
    return bool(_SECRET_NAME.search(bare)) and not _NOT_SECRET.search(bare)


def redact_value(text: str) -> str:
    """``text`` with every word that looks like a known kind of secret replaced by ``***``."""
    return _SECRET_VALUE.sub(HIDDEN, text)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """``argv`` with the secrets hidden (see the module docstring); the words keep their places."""
    out: list[str] = []
    hide_next = False
    for word in map(str, argv):
        if hide_next and not word.startswith("--"):
            out.append(HIDDEN)
            hide_next = False
            continue
        hide_next = False
        if word.startswith("-") and "=" in word:
            flag, _ = word.split("=", 1)
            out.append(f"{flag}={HIDDEN}" if is_secret_name(flag) else redact_value(word))
        elif word.startswith("-"):
            hide_next = is_secret_name(word)
            out.append(word)
        elif _ENV_WORD.match(word) and is_secret_name(_ENV_WORD.match(word).group(1)):
            out.append(f"{_ENV_WORD.match(word).group(1)}={HIDDEN}")
        else:
            out.append(redact_value(word))
    return out


def command_line(argv: Sequence[str]) -> str:
    """The command ``argv`` as one shell-quoted line, secrets hidden: what a log or a message may show."""
    return " ".join(word if word == HIDDEN or word.endswith("=" + HIDDEN) else shlex.quote(word)
                    for word in redact_argv(argv))


def redact_command_text(text: str) -> str:
    """A command line already joined into one string (a record written by an older version, a user's text): split
    as the shell would and redacted word by word; text that does not split is redacted by value only."""
    try:
        return command_line(shlex.split(text))
    except ValueError:
        return redact_value(text)
