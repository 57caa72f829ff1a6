"""manifest.json: what a built world holds. Paths are stored relative to the world and made absolute on load,
so a world folder can be moved or copied."""

from __future__ import annotations

import json
import os

MANIFEST_NAME = "manifest.json"
# Bump whenever the builder's output changes, so stale worlds are rebuilt instead of reused. Older versions still
# build (``build(..., version=3)``, ``--version 3``): a version only ever adds to the one before.
BUILDER_VERSION = 5
VERSIONS = (3, 4, 5)

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
# Added by builder version 4: the shift setting's validation split and the distractor setting's three splits.
V4_PATH_KEYS = (
    "shift_val_questions",
    "shift_val_answers",
    "llava_distractor_train_json",
    "qwen_distractor_train_json",
    "distractor_val_questions",
    "distractor_val_answers",
    "distractor_eval_questions",
    "distractor_eval_answers",
)
VALUE_KEYS = ("preset", "seed", "version", "answer_words", "families", "chance", "counts")


def path_keys(version: int) -> tuple[str, ...]:
    """The path keys a world of builder ``version`` holds."""
    return PATH_KEYS + (V4_PATH_KEYS if version >= 4 else ())


def save_manifest(root: str, manifest: dict) -> str:
    """Writes manifest.json with paths relative to root (atomically: a half-written manifest never exists)."""
    keys = path_keys(manifest.get("version", BUILDER_VERSION))
    missing = [k for k in keys + VALUE_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks keys {missing}")
    stored = dict(manifest)
    for key in keys:
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
    for key in path_keys(manifest.get("version", 3)):
        manifest[key] = os.path.normpath(os.path.join(root, manifest[key]))
    return manifest


def missing_paths(manifest: dict) -> list[str]:
    return [key for key in path_keys(manifest.get("version", 3)) if not os.path.exists(manifest[key])]
