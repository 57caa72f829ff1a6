"""Example (image, question) pairs for the web demo: the first eval questions of a tiny world, or the images of a
folder with a generic question."""

from __future__ import annotations

import os
from pathlib import Path

from ..files import read_json, read_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
GENERIC_QUESTION = "What is in the image?"
MANIFEST_NAME = "manifest.json"


WORLD_SPLITS = ("eval_questions", "shift_eval_questions")  # the training domain, then the shifted one MuNG tunes on


def _split_rows(root: Path, manifest: dict, key: str, limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` (image, question) pairs of the world's question file ``manifest[key]``."""
    questions = root / manifest[key]
    rows = []
    for line, row in read_jsonl(questions, "the tiny world's eval questions"):
        if not isinstance(row, dict) or "image" not in row or "text" not in row:
            raise ValueError(f"{questions}:{line}: a question needs 'image' and 'text'.")
        rows.append((str(root / manifest["image_folder"] / row["image"]), row["text"]))
        if len(rows) == limit:
            break
    return rows


def _from_world(root: Path, limit: int) -> list[tuple[str, str]]:
    """The first eval questions of the tiny world at ``root`` (its manifest's paths are relative to it): half from
    the plain eval split, half from the shifted one when the world has it."""
    manifest = read_json(root / MANIFEST_NAME, "a tiny world manifest")
    splits = [key for key in WORLD_SPLITS if key in manifest]
    if "image_folder" not in manifest or not splits:
        raise ValueError(f"{root / MANIFEST_NAME} lacks image_folder or eval_questions; pass a tiny world folder or a "
                         "folder of images.")
    shares = [limit - limit // len(splits) * (len(splits) - 1)] + [limit // len(splits)] * (len(splits) - 1)
    return [row for key, share in zip(splits, shares) for row in _split_rows(root, manifest, key, share)]


def example_rows(path: str | os.PathLike, limit: int = 4) -> list[tuple[str, str]]:
    """(image path, question) pairs from ``path``: a tiny world folder (or its manifest.json), else a folder of
    images (the first ``limit`` by name, each with a generic question)."""
    root = Path(path).expanduser().resolve()
    if root.name == MANIFEST_NAME and root.is_file():
        root = root.parent
    if not root.is_dir():
        raise ValueError(f"--examples {path}: not a folder; pass a tiny world folder or a folder of images.")
    if (root / MANIFEST_NAME).is_file():
        return _from_world(root, limit)
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ValueError(f"--examples {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder.")
    return [(str(p), GENERIC_QUESTION) for p in images[:limit]]
