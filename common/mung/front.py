"""``mung``: one command for what users do, each subcommand the project's own entry point (``mung.subcommands``).

    mung train --model_name_or_path BASE --data_path train.json ... --output_dir out/run
    mung eval --model-path out/run --question-file q.jsonl --answers-file out/answers.jsonl
    mung score tiny-world --answers-file out/answers.jsonl --truth-file truth.jsonl
    mung chat | serve web | serve api | compare | export | visualize | convert | world ...

The front reads only its own words (the command, a group's choice, ``--backbone`` for ``train``, ``--config``) and
hands every other argument unchanged to the module's ``main``, which parses, checks and reports as it does under
``python -m``. It imports nothing heavy before that, so ``mung --help`` and a group's help are instant; a leaf's
``--help`` is its module's own.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any, Optional, Sequence

from .commands import run_command
from .subcommands import COMMANDS, ByBackbone, Group, Leaf, Node

HELP_FLAGS = ("-h", "--help")
WIDTH = 12  # the column of the one-line summaries


def listing(entries: dict[str, Any]) -> str:
    return "\n".join(f"  {name:<{WIDTH}}{node.summary}" for name, node in entries.items())


def top_help() -> str:
    return (
        "usage: mung COMMAND [ARGS ...] [--config FILE.yaml]\n\n"
        "MuNG: fine-tune multimodal LLMs with learned beneficial noise; evaluate, score, chat and serve them.\n\n"
        f"commands:\n{listing(COMMANDS)}\n\n"
        "A command's flags: mung COMMAND --help. --config FILE.yaml gives flags from a file (keys are the flags; flags "
        "on the command line win).\nA user error ends with one line, `error: ...`, and exit status 2 "
        "(MUNG_TRACEBACK=1 shows the traceback).\n"
    )


def group_help(path: list[str], group: Group) -> str:
    name = " ".join(path)
    default = f" (without one: {group.default})" if group.default else ""
    return (f"usage: {name} {'[' if group.default else '{'}{'|'.join(group.children)}{']' if group.default else '}'} "
            f"[ARGS ...] [--config FILE.yaml]\n\n{group.summary}.\n\nchoices{default}:\n{listing(group.children)}\n\n"
            f"A choice's flags: {name} CHOICE --help.\n")


def backbone_help(path: list[str], node: ByBackbone) -> str:
    name = " ".join(path)
    return (f"usage: {name} [--backbone {{{','.join(node.children)}}}] {node.model_flag} FOLDER ... "
            f"[--config FILE.yaml]\n\n{node.summary}.\n\nbackbones:\n{listing(node.children)}\n\n"
            f"Without --backbone, the backbone that serves {node.model_flag}'s config.json.\n"
            f"A backbone's flags: {name} --backbone NAME --help.\n")


def take_option(argv: list[str], flags: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """The value of the first of ``flags`` in ``argv`` (``--flag V`` or ``--flag=V``), and ``argv`` without it."""
    for i, word in enumerate(argv):
        for flag in flags:
            if word == flag:
                if i + 1 == len(argv):
                    raise ValueError(f"{flag} needs a value.")
                return argv[i + 1], argv[:i] + argv[i + 2:]
            if word.startswith(flag + "="):
                return word[len(flag) + 1:], argv[:i] + argv[i + 1:]
    return None, argv


def flag_name(key: str) -> str:
    """A flag's name as --config keys may spell it: dashes optional, ``-`` and ``_`` alike."""
    return key.lstrip("-").replace("-", "_")


def backbone_of_folder(node: ByBackbone, folder: str) -> str:
    """The backbone that serves ``folder``'s config.json (``mung.backbones``, which imports the installed backbones)."""
    from .backbones import for_config, read_config

    config = read_config(folder)
    if config is None:
        raise ValueError(f"{node.model_flag} {folder} has no config.json to choose the backbone from; name it with "
                         f"--backbone ({', '.join(node.children)}).")
    try:
        return for_config(config, f"{folder}/config.json").name
    except ValueError as err:
        raise ValueError(f"{err} Name the backbone with --backbone ({', '.join(node.children)}).") from None


def choose_backbone(path: list[str], node: ByBackbone, rest: list[str],
                    config: dict[str, Any]) -> tuple[Optional[Leaf], list[str], list[str]]:
    backbone, rest = take_option(rest, ["--backbone"])
    if backbone is None and any(word in HELP_FLAGS for word in rest):
        print(backbone_help(path, node))
        return None, path, rest
    if backbone is None:
        folder, _ = take_option(rest, [node.model_flag, *node.aliases])
        if folder is None:
            folder = next((str(v) for k, v in config.items() if flag_name(k) == flag_name(node.model_flag)), None)
        if folder is None:
            raise ValueError(f"`{' '.join(path)}` needs {node.model_flag} (its config.json names the backbone) or "
                             f"--backbone ({', '.join(node.children)}).")
        backbone = backbone_of_folder(node, folder)
    if backbone not in node.children:
        raise ValueError(f"`{' '.join(path)}` has no backbone {backbone!r}; choose one of: {', '.join(node.children)}.")
    return node.children[backbone], path, rest


def choose_child(path: list[str], group: Group, rest: list[str]) -> tuple[Optional[Leaf], list[str], list[str]]:
    name = " ".join(path)
    if rest and rest[0] in group.children:
        return group.children[rest[0]], path + [rest[0]], rest[1:]
    if rest and rest[0] in HELP_FLAGS:
        print(group_help(path, group))
        return None, path, rest
    if rest and not rest[0].startswith("-"):
        raise ValueError(f"`{name}` has no {rest[0]!r}; choose one of: {', '.join(group.children)} ({name} --help).")
    if group.default is None:
        raise ValueError(f"`{name}` needs one of: {', '.join(group.children)} ({name} --help).")
    return group.children[group.default], path + [group.default], rest


def resolve(node: Node, path: list[str], rest: list[str],
            config: dict[str, Any]) -> tuple[Optional[Leaf], list[str], list[str]]:
    """The leaf to run (None when help was printed), its command words and its arguments."""
    if isinstance(node, Group):
        return choose_child(path, node, rest)
    if isinstance(node, ByBackbone):
        return choose_backbone(path, node, rest, config)
    return node, path, rest


def load_target(leaf: Leaf, path: list[str]):
    module_name, function = leaf.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name == err.name or module_name.startswith(err.name + ".")):
            raise  # a dependency of the module is missing: its own message says which
        raise ValueError(f"`{' '.join(path)}` runs {module_name}, which this installation does not have "
                         f"({err}); update the checkout and reinstall (bash scripts/install.sh).") from None
    return getattr(module, function)


def run_leaf(leaf: Leaf, path: list[str], rest: list[str], config_path: Optional[str], config: dict[str, Any]):
    entry = load_target(leaf, path)
    if any(word in HELP_FLAGS for word in rest):
        print(f"{' '.join(path)}: {leaf.summary}. Flags also from --config FILE.yaml (keys are the flags below).\n")
    from .config_file import flags_from_file

    program = sys.argv[0]
    sys.argv[0] = " ".join(path)  # argparse's usage line names the command the user typed
    try:
        with flags_from_file(config_path, config) if config_path else contextlib.nullcontext():
            return entry(rest)
    finally:
        sys.argv[0] = program


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """Run ``mung ARGS``; returns what the command's ``main`` returns (None after a help text)."""
    args = list(sys.argv[1:] if argv is None else argv)
    config_path, args = take_option(args, ["--config"])
    if not args:
        raise ValueError(f"name a command: {', '.join(COMMANDS)} (mung --help says what each does).")
    if args[0] in HELP_FLAGS:
        print(top_help())
        return None
    if args[0] not in COMMANDS:
        raise ValueError(f"unknown command {args[0]!r}; commands: {', '.join(COMMANDS)} (mung --help).")
    config: dict[str, Any] = {}
    if config_path is not None:
        from .config_file import read_config_file

        config = read_config_file(config_path)
    leaf, path, rest = resolve(COMMANDS[args[0]], ["mung", args[0]], args[1:], config)
    if leaf is None:
        return None
    return run_leaf(leaf, path, rest, config_path, config)


def entry() -> None:
    """The ``mung`` console script."""
    run_command(main)
