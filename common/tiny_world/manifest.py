"""manifest.json: what a built world holds. Paths are stored relative to the world and made absolute on load,
so a world folder can be moved or copied."""

from __future__ import annotations

import json
import os

MANIFEST_NAME = "manifest.json"
# Bump whenever the builder's output changes, so stale worlds are rebuilt instead of reused.
BUILDER_VERSION = 3

PATH_KEYS = (
    "llava_llm",
    "llava_vision_tower",
    "qwen_model",
    "image_folder",
    "scenes",
    "llava_train_json",
    "llava_shift_train_json",
    "qwen_train_json",
    "qwen_shift_train_json",
    "mmpr_meta",
    "eval_questions",
    "eval_answers",
    "shift_eval_questions",
    "shift_eval_answers",
)
VALUE_KEYS = ("preset", "seed", "version", "answer_words", "families", "chance", "counts")


def save_manifest(root: str, manifest: dict) -> str:
    """Writes manifest.json with paths relative to root (atomically: a half-written manifest never exists)."""
    missing = [k for k in PATH_KEYS + VALUE_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks keys {missing}")
    stored = dict(manifest)
    for key in PATH_KEYS:
        stored[key] = os.path.relpath(manifest[key], root).replace(os.sep, "/")
    path = os.path.join(root, MANIFEST_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stored, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def load_manifest(out_dir: str) -> dict:
    """Reads DIR/manifest.json and returns it with every path made absolute."""
    root = os.path.abspath(out_dir)
    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no tiny world at {root} ({MANIFEST_NAME} missing); build one with "
                                f"`python -m tiny_world --out {out_dir}`")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    for key in PATH_KEYS:
        manifest[key] = os.path.normpath(os.path.join(root, manifest[key]))
    return manifest


def missing_paths(manifest: dict) -> list[str]:
    return [key for key in PATH_KEYS if not os.path.exists(manifest[key])]
