"""``mung COMMAND --config FILE.yaml``: a YAML mapping whose keys are the command's flags.

A key is a flag as the command spells it, with or without its dashes (``model-path``, ``--model-path``;
``max_new_tokens`` also matches ``--max-new-tokens`` and back). A value is what would follow the flag: a scalar, a
list for a flag that takes several values, ``true``/``false`` for a switch (``true`` gives it, ``false`` leaves it
out). The file's flags go before the command line's, so a flag given on the command line wins.

Every command builds its parser inside its own ``main``, so the only parser that knows the command's flags is the
one ``main`` builds: ``flags_from_file`` wraps the first ``parse_known_args`` call (which ``parse_args`` and
``HfArgumentParser`` both make) while that ``main`` runs, checks the file's keys and values against that parser,
and puts them in front of the arguments. An unknown key or a bad value stops the command with the file and the key
named, before anything loads.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Iterator, Optional, Sequence

import yaml


def read_config_file(path: str) -> dict[str, Any]:
    """The file's ``flag: value`` mapping; a one-line error naming the file (and line) when it is not one."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML ({problem}); write one `flag: value` per line.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: holds a {type(values).__name__}, not a mapping; write one `flag: value` per line.")
    for key in values:
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r} is not a flag name; write one `flag: value` per line.")
    return values


def find_action(parser: argparse.ArgumentParser, key: str) -> Optional[argparse.Action]:
    """The parser's option that ``key`` names (dashes optional, ``_`` and ``-`` inside the name interchangeable)."""
    name = key.lstrip("-")
    for spelling in (name, name.replace("_", "-"), name.replace("-", "_")):
        action = parser._option_string_actions.get("--" + spelling) or parser._option_string_actions.get("-" + spelling)
        if action is not None:
            return action
    return None


def value_strings(key: str, value: Any, action: argparse.Action, path: str) -> list[str]:
    """What follows the flag on a command line for ``value``; ``[]`` for a switch set to false."""
    if action.nargs == 0:  # a switch: store_true / store_false / store_const / count
        if not isinstance(value, bool):
            raise ValueError(f"{path}: key {key!r} is a switch; give it true or false, not {value!r}.")
        return ["true"] if value else []
    if value is None:
        raise ValueError(f"{path}: key {key!r} has no value; give one or leave the key out.")
    items = value if isinstance(value, list) else [value]
    return [str(item).lower() if isinstance(item, bool) else str(item) for item in items]


def flag_tokens(parser: argparse.ArgumentParser, values: dict[str, Any], path: str) -> list[str]:
    """The file's flags as command-line words for ``parser``, each key and value checked by the parser's own rules."""
    tokens: list[str] = []
    for key, value in values.items():
        action = find_action(parser, key)
        if action is None or isinstance(action, argparse._HelpAction):
            raise ValueError(f"{path}: unknown key {key!r}: `{parser.prog}` has no flag --{key.lstrip('-')} "
                             f"(its flags: {parser.prog} --help).")
        strings = value_strings(key, value, action, path)
        if action.nargs == 0:
            tokens += [action.option_strings[-1]] if strings else []
            continue
        appends = isinstance(action, argparse._AppendAction)
        if action.nargs in (None, "?") and not appends and len(strings) != 1:
            raise ValueError(f"{path}: key {key!r} takes one value, not a list of {len(strings)}.")
        try:  # the parser's own type and choices check, so a bad value names the file and the key
            for group in ([[item] for item in strings] if appends else [list(strings)]):
                parser._get_values(action, group)
        except argparse.ArgumentError as err:
            raise ValueError(f"{path}: key {key!r}: {err.message}") from None
        if appends:
            for item in strings:
                tokens += [action.option_strings[-1], item]
        else:
            tokens += [action.option_strings[-1], *strings]
    return tokens


@contextlib.contextmanager
def flags_from_file(path: str, values: dict[str, Any]) -> Iterator[None]:
    """While the block runs, the first parse of a command line starts with the file's flags."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_with_file(parser: argparse.ArgumentParser, args: Optional[Sequence[str]] = None, namespace=None):
        argparse.ArgumentParser.parse_known_args = original  # only the command's own parse reads the file
        given = sys.argv[1:] if args is None else list(args)
        return original(parser, flag_tokens(parser, values, path) + given, namespace)

    argparse.ArgumentParser.parse_known_args = parse_with_file
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original
