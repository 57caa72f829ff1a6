"""JSON and JSON-lines files with errors that name the file and line, and writes that never leave half a file.

``read_records`` reads a JSON list or a JSON-lines file of objects (training data, question files, annotations);
``write_json`` / ``write_jsonl`` / ``atomic_write`` write to a hidden temporary file beside the target, flush it to
disk and rename it into place, so a run killed while writing leaves the previous complete file (or none).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from .paths import missing_reason


def _text_of(path: Path) -> str:
    """The file's text as UTF-8 (a BOM is dropped); a byte that is not UTF-8 is reported with its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: byte {data[err.start]:#04x} is not UTF-8; save the file as UTF-8."
        ) from None


def _existing(path: str | os.PathLike, expected: str) -> Path:
    reason = missing_reason(path) if path else "does not exist"
    if reason:
        raise FileNotFoundError(f"{path} {reason}; pass {expected}.")
    return Path(path)


def _too_deep(path: Path, line: Optional[int] = None) -> ValueError:
    where = f"{path}:{line}" if line else str(path)
    return ValueError(f"{where}: the JSON is nested too deeply to read (lists or objects more than about "
                      f"{sys.getrecursionlimit()} levels inside each other); no record of this project nests like "
                      "that: fix or regenerate the file.")


def read_text(path: str | os.PathLike, expected: str = "an existing text file") -> str:
    """The UTF-8 text of ``path`` (a BOM dropped); a missing file or a byte that is not UTF-8 is named."""
    return _text_of(_existing(path, expected))


def read_json(path: str | os.PathLike, expected: str = "an existing JSON file") -> Any:
    """``json.load`` of ``path``; a syntax error names the file, line and column."""
    path = _existing(path, expected)
    try:
        return json.loads(_text_of(path))
    except RecursionError:
        raise _too_deep(path) from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); fix that line (a .jsonl file "
            "holds one object per line)."
        ) from None


def read_jsonl(path: str | os.PathLike, expected: str = "an existing JSON-lines file") -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON-lines file."""
    path = _existing(path, expected)
    rows = []
    for number, line in enumerate(_text_of(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except RecursionError:
            raise _too_deep(path, number) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}); fix or remove that line.") from None
    return rows


def read_records(
    path: str | os.PathLike, with_lines: bool = False, expected: str = "an existing JSON or JSON-lines file"
):
    """The objects of a JSON list or a JSON-lines file (decided by the first character, not the name).

    ``with_lines`` also returns each record's line number (None for records of a JSON list). Every record must be
    an object; ``expected`` says what to pass when ``path`` is missing.
    """
    path = _existing(path, expected)
    if _text_of(path).lstrip().startswith("["):
        records = read_json(path)
        lines: list[Optional[int]] = [None] * len(records)
    else:
        numbered = read_jsonl(path)
        lines = [n for n, _ in numbered]
        records = [value for _, value in numbered]
    for index, (record, line) in enumerate(zip(records, lines)):
        if not isinstance(record, dict):
            where = f"line {line}" if line else f"record {index}"
            raise ValueError(f"{path}: {where} is a {type(record).__name__}, expected an object {{...}}.")
    return (records, lines) if with_lines else records


def index_by(rows: Iterable[dict], key: str, path: str | os.PathLike) -> dict:
    """``row[key]`` → row; a missing or repeated key is an error naming ``path``."""
    out = {}
    for i, row in enumerate(rows, start=1):
        if key not in row:
            raise ValueError(f"{path}: record {i} has no '{key}' field.")
        if row[key] in out:
            raise ValueError(f"{path}: '{key}' {row[key]!r} appears more than once (record {i}).")
        out[row[key]] = row
    return out


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def path_relation(output: str | os.PathLike, source: str | os.PathLike) -> Optional[str]:
    """How the path ``output`` stands to ``source``, links resolved: ``"is"`` (the same path, a symbolic link to it
    or a hard link of it), ``"contains"`` (``source`` lies inside the folder ``output``), ``"is inside"`` (``output``
    lies inside the folder ``source``), or None."""
    out, src = _real(output), _real(source)
    if out == src or (os.path.exists(out) and os.path.exists(src) and os.path.samefile(out, src)):
        return "is"
    if src.startswith(out.rstrip(os.sep) + os.sep):
        return "contains"
    if out.startswith(src.rstrip(os.sep) + os.sep):
        return "is inside"
    return None


def check_output_path(output: Optional[str | os.PathLike], flag: str, inputs: dict[str, Any],
                      kind: str = "file", also: Optional[dict[str, str]] = None) -> None:
    """The one rule of every command that writes, checked before anything is read: no output path may be, contain or
    sit inside one of its ``inputs`` (flag → path; empty ones and paths that do not exist here, such as hub ids,
    are skipped).
    ``output`` is what ``flag`` names, a ``kind`` "file" (a folder there is refused) or "folder"; ``also`` (what →
    path) names other paths the command writes beside it (``<answers>.partial``), held to the same rule."""
    if not output:
        return
    if kind == "file" and Path(output).is_dir():
        raise ValueError(f"{flag} {output} is a folder; pass the path of the file to write.")
    written = {f"{flag} {output}": output}
    written.update({f"{flag} {output} writes {what} {path}, which": path for what, path in (also or {}).items()})
    for said, path in written.items():
        for input_flag, source in inputs.items():
            if not source or not os.path.lexists(os.path.expanduser(str(source))):
                continue  # nothing given, or not a local path (a hub id): nothing here to destroy
            relation = path_relation(path, source)
            if relation is None:
                continue
            what = {"is": "is the same file as", "contains": "contains", "is inside": "is inside"}[relation]
            if relation == "is" and (Path(_real(path)).is_dir() or kind == "folder"):
                what = "is the same folder as"
            harm = ("writing it would destroy what is read from it" if relation == "is" else
                    "writing there could overwrite or change what is read from it")
            raise ValueError(f"{said} {what} {input_flag} {source}: {harm}. Pass another {flag}"
                             f"{' outside ' + str(source) if relation == 'is inside' else ''}.")


CREATED_MARKER = ".mung_created"


def mark_created(folder: str | os.PathLike, command: str) -> None:
    """Create ``folder`` (if need be) and mark it as made by ``command``, so that a later run of it may replace it
    (``clear_own_folder``)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text(Path(folder) / CREATED_MARKER, command + "\n")


def clear_own_folder(folder: str | os.PathLike, flag: str, command: str) -> None:
    """Remove ``folder`` before ``command`` writes it again, only when an earlier run of ``command`` made it (its
    ``CREATED_MARKER`` names the command) or it is empty; anything else is refused, the folder untouched: a command
    never deletes what it did not create."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    marker = folder / CREATED_MARKER
    made_here = marker.is_file() and marker.read_text(encoding="utf-8", errors="replace").strip() == command
    if folder.is_dir() and not folder.is_symlink() and (made_here or not any(folder.iterdir())):
        shutil.rmtree(folder)
        return
    raise ValueError(
        f"{folder} exists and was not made by {command} (it has no {CREATED_MARKER} of it), so it is left as it is. "
        f"Move it away, or pass another {flag}."
    )


def ensure_parent(path: str | os.PathLike) -> None:
    Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)


def _fsync(path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """``write(tmp)`` to a hidden temporary file beside ``path``, flush it to disk, then rename it over ``path``; the
    file keeps the mode a plain write would give it (``noise_generator.io.write_atomically``, the one implementation)."""
    from noise_generator.io import write_atomically  # here: importing noise_generator imports torch, which
    # the light commands' --help does without

    write_atomically(path, write)


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: Optional[int] = None) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + ("\n" if indent else ""))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_folder_atomically(target: str | os.PathLike, save: Callable[[str], Any]) -> None:
    """``save(folder)`` into a hidden staging folder beside ``target`` (absent or empty), renamed to ``target`` once
    complete: a save that fails half-way (a full disk, a crash) leaves no half-written folder that looks whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        save(str(staging))
        if target.is_dir():
            target.rmdir()  # empty (refused otherwise): a file put there meanwhile stops the rename instead
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_pretrained_atomically(obj: Any, output_dir: str | os.PathLike, **kwargs: Any) -> list[str]:
    """``obj.save_pretrained(output_dir, **kwargs)`` (a peft adapter, a config, a processor) staged in a hidden folder
    inside ``output_dir`` and renamed into place file by file, weights before the JSON files that describe them, so
    a folder never pairs a new config with missing or half-written weights. Returns the names written."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=output_dir))
    try:
        obj.save_pretrained(str(staging), **kwargs)
        files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".json", str(p)))
        for source in files:
            target = output_dir / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            _fsync(source)
            os.replace(source, target)
        return [str(p.relative_to(staging)) for p in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
