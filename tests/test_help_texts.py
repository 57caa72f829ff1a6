"""Every command-line entry point's ``--help``: every option says what it is for, the description is a whole
sentence (not a docstring's first line cut mid-sentence), and the usage line names the command the user typed,
never a file. The class, not the examples: the entry points are found from the source (every ``if __name__ ==
"__main__"`` block), and each one's parser is the one its own ``main`` builds, caught at its first parse."""

import argparse
import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("common/mung", "common/tiny_world", "llava_noise", "qwen_noise", "vlm_noise", "scripts", "benchmarks")
# commands.py: its __main__-looking text is documentation; the mung front has no argparse parser of its own (its
# help texts: test_mung_command.py).
NOT_ENTRY_POINTS = {"common/mung/commands.py", "common/mung/__main__.py"}


class Caught(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(function, args) -> argparse.ArgumentParser:
    """The parser ``function(*args)`` builds, caught at its first parse (nothing after it runs)."""
    def catch(parser, args=None, namespace=None):
        raise Caught(parser)

    original = argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_known_args = catch
    try:
        function(*args)
    except Caught as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
    raise AssertionError(f"{function} returned without parsing a command line")


def main_blocks():
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            name = str(path.relative_to(REPO))
            if name in NOT_ENTRY_POINTS:
                continue
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
                    yield name, node


def module_of(path: str):
    parts = Path(path).with_suffix("").parts
    if parts[0] == "scripts":  # scripts are files, not a package
        spec = importlib.util.spec_from_file_location(f"_help_walk_{parts[-1]}", REPO / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        sys.path.insert(0, str(REPO / "scripts"))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(REPO / "scripts"))
        return module
    return importlib.import_module(".".join(parts[1:] if parts[0] == "common" else parts))


def the_parser(path: str, block: ast.If) -> argparse.ArgumentParser:
    """The parser of the entry point in ``block``: the function it runs (``run_command(main)``, ``main()``), called
    with an empty argument list; a block that builds its parser itself is run as the block."""
    module = module_of(path)
    source = ast.unparse(block)
    if "ArgumentParser(" in source:
        body = compile(ast.Module(body=block.body, type_ignores=[]), path, "exec")
        return parser_of(exec, (body, dict(vars(module))))
    calls = [node for node in ast.walk(block) if isinstance(node, ast.Call)]
    names = [arg.id for call in calls for arg in (call.func, *call.args)
             if isinstance(arg, ast.Name) and arg.id not in {"run_command", "close_process_group", "name_the_command"}
             and hasattr(module, arg.id)]
    function = getattr(module, names[0])
    return parser_of(function, ([],) if function.__code__.co_argcount else ())


ENTRY_POINTS = list(main_blocks())


@pytest.fixture(scope="module")
def parsers():
    program = sys.argv[0]
    sys.argv[0] = "mung test"  # what the mung front or name_the_command puts there
    try:
        return {path: the_parser(path, block) for path, block in ENTRY_POINTS}
    finally:
        sys.argv[0] = program


def test_the_walk_finds_the_entry_points():
    names = {path for path, _ in ENTRY_POINTS}
    assert len(names) > 50
    assert {"common/mung/serve/api.py", "scripts/quickstart.py", "llava_noise/train/train.py"} <= names


@pytest.mark.parametrize("path", [path for path, _ in ENTRY_POINTS])
def test_every_option_has_help(parsers, path):
    parser = parsers[path]
    silent = [action.option_strings[0] for action in parser._actions if action.option_strings and not action.help]
    assert silent == []


@pytest.mark.parametrize("path", [path for path, _ in ENTRY_POINTS])
def test_the_description_is_whole_sentences(parsers, path):
    first = " ".join((parsers[path].description or "").strip().split("\n\n")[0].split())  # the first paragraph
    assert first, "no description"
    assert first.count("(") == first.count(")") and first.count("`") % 2 == 0, first
    assert first.rstrip().endswith((".", ".)", ")")), first


@pytest.mark.parametrize("path", [path for path, _ in ENTRY_POINTS])
def test_the_usage_names_the_command_not_a_file(parsers, path):
    prog = parsers[path].prog
    assert not prog.endswith(".py") or prog.startswith("python scripts/"), prog
    if not path.startswith("scripts/"):
        assert prog == "mung test"  # nothing hard-codes another name over what the front says


def test_python_dash_m_names_the_module_in_the_usage_line():
    done = subprocess.run([sys.executable, "-m", "mung.eval.eval_tiny_world", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m mung.eval.eval_tiny_world ")
