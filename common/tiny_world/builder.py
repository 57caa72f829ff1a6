"""Building a world folder: data, images, tokenizers and models, then the manifest.

A world is built in a sibling staging folder and moved into place at the end, manifest last, so an interrupted
build never leaves a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from . import formats
from .corpus import corpus_lines
from .images import save_pngs
from .manifest import BUILDER_VERSION, MANIFEST_NAME, VERSIONS, load_manifest, missing_paths, save_manifest
from .presets import Preset, get_preset
from .scenes import Scene
from .splits import MULTI_IMAGE_SHARE, Split, make_multi_image_samples, make_split
from .vocabulary import ANSWER_WORDS, CHANCE, FAMILIES

# Top-level entries a world owns; a rebuild replaces exactly these and leaves anything else in the folder alone.
OWNED_ENTRIES = (MANIFEST_NAME, "images", "llava", "qwen", "data", "mmpr", "eval")
IMAGE_WORKERS = 2  # threads
IMAGE_CHUNK = 400  # images per worker task


def build(out_dir: str, preset: str = "tiny", seed: int = 0, force: bool = False, verbose: bool = True,
          version: int = BUILDER_VERSION) -> dict:
    """Builds the world of builder ``version`` into out_dir (or reuses the one there if preset, seed and version
    match, unless force) and returns its manifest with absolute paths."""
    spec = get_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if version not in VERSIONS:
        raise ValueError(f"builder version must be one of {VERSIONS}, got {version!r}")
    log = _logger(verbose)
    root = os.path.abspath(out_dir)

    existing = _existing_world(root)
    if existing and not force and _matches(existing, preset, seed, version):
        log(f"reusing the {preset} world (seed {seed}, version {version}) at {root}")
        return existing
    _check_target(root, force)

    staging = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    start = time.perf_counter()
    log(f"building the {preset} world (seed {seed}, version {version}) into {root}")
    try:
        _build_into(staging, spec, seed, version, log)
        _install(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"done in {time.perf_counter() - start:.1f} s")
    return load_manifest(root)


def _logger(verbose: bool) -> Callable[[str], None]:
    if not verbose:
        return lambda msg: None
    return lambda msg: print(f"[tiny_world] {msg}", flush=True)


def _existing_world(root: str) -> dict | None:
    """The manifest of a complete world at root, or None (absent, unreadable, or with files missing)."""
    if not os.path.isfile(os.path.join(root, MANIFEST_NAME)):
        return None
    try:
        manifest = load_manifest(root)
        return None if missing_paths(manifest) else manifest
    except (ValueError, KeyError, TypeError):
        return None


def _matches(manifest: dict, preset: str, seed: int, version: int) -> bool:
    return (manifest.get("preset"), manifest.get("seed"), manifest.get("version")) == (preset, seed, version)


def _check_target(root: str, force: bool) -> None:
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"{root} exists and is not a directory")
    if force or not os.path.isdir(root) or os.path.isfile(os.path.join(root, MANIFEST_NAME)):
        return
    if os.listdir(root):
        raise FileExistsError(
            f"{root} is not empty and holds no tiny world; pass force=True (--force) to build into it anyway "
            f"(only {', '.join(OWNED_ENTRIES)} would be replaced)"
        )


def _install(staging: str, root: str) -> None:
    if not os.path.isdir(root) or not os.listdir(root):
        os.rename(staging, root)  # rename(2) replaces an empty directory atomically
        return
    for name in OWNED_ENTRIES:
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    for name in sorted(os.listdir(staging)):
        if name != MANIFEST_NAME:
            os.rename(os.path.join(staging, name), os.path.join(root, name))
    os.rename(os.path.join(staging, MANIFEST_NAME), os.path.join(root, MANIFEST_NAME))


def _build_into(root: str, preset: Preset, seed: int, version: int, log: Callable[[str], None]) -> None:
    paths = _layout(root, preset, version)
    counts: dict[str, int] = {}
    splits = {
        "train": make_split("train", preset.n_train, seed, training=True),
        "shift_train": make_split("shift_train", preset.n_shift_train, seed, training=True),
    }
    seen = frozenset(scene.appearance() for split in splits.values() for scene in split.scenes.values())
    splits["eval"] = make_split("eval", preset.n_eval, seed, training=False, avoid=seen)
    splits["shift_eval"] = make_split("shift_eval", preset.n_shift_eval, seed, training=False, avoid=seen)
    if version >= 4:
        splits.update(_v4_splits(preset, seed, splits))
    scenes = {path: scene for split in splits.values() for path, scene in split.scenes.items()}
    formats.write_json(paths["scenes"], {path: scene.to_dict() for path, scene in scenes.items()}, indent=None)
    counts["images"] = len(scenes)

    with _rendering(paths["image_folder"], scenes, log):
        for name in ("train", "shift_train"):
            split = splits[name]
            multi = make_multi_image_samples(split, round(len(split.samples) * MULTI_IMAGE_SHARE), seed)
            llava = formats.llava_records(split.samples)
            qwen = formats.qwen_records(split.samples + multi)
            formats.write_json(paths[f"llava_{name}_json"], llava)
            formats.write_json(paths[f"qwen_{name}_json"], qwen)
            counts[name], counts[f"qwen_{name}"] = len(llava), len(qwen)
            if name == "train":
                mmpr_dir = os.path.dirname(paths["mmpr_meta"])
                _, counts["mmpr"] = formats.write_mmpr(mmpr_dir, paths["image_folder"], split.samples + multi)
        if version >= 4:
            llava = formats.llava_records(splits["distractor_train"].samples)
            for backbone in ("llava", "qwen"):  # single-image samples only: the same records for both
                formats.write_json(paths[f"{backbone}_distractor_train_json"], llava)
            counts["distractor_train"] = len(llava)
        for name in [n for n in EVAL_SPLITS if n in splits]:
            formats.write_eval(paths[f"{name}_questions"], paths[f"{name}_answers"], splits[name].samples)
            counts[name] = len(splits[name].samples)
        log("wrote the data files: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        _build_models(paths, preset, seed, version, log)

    manifest = dict(paths)
    manifest.update(
        preset=preset.name,
        seed=seed,
        version=version,
        answer_words=list(ANSWER_WORDS),
        families=list(FAMILIES),
        chance=dict(CHANCE),
        counts=counts,
    )
    save_manifest(root, manifest)


EVAL_SPLITS = ("eval", "shift_eval", "shift_val", "distractor_val", "distractor_eval")


def _v4_splits(preset: Preset, seed: int, v3: dict[str, Split]) -> dict[str, Split]:
    """Builder version 4's splits, drawn after (and so without changing) version 3's: a validation split of the
    shift setting and the distractor setting's train / validation / eval splits. A validation split shares no
    drawn layout (the same shapes in the same places, whatever the noise) with its setting's train or eval split;
    the distractor eval split shares no image with its train split (as version 3's eval splits)."""
    shift_layouts = frozenset(scene.layout() for split in v3.values() for scene in split.scenes.values())
    out = {"shift_val": make_split("shift_val", preset.n_shift_val, seed, training=False,
                                   avoid_layouts=shift_layouts)}
    train = make_split("distractor_train", preset.n_distractor_train, seed, training=True)
    out["distractor_train"] = train
    seen = frozenset(scene.appearance() for scene in train.scenes.values())
    out["distractor_eval"] = make_split("distractor_eval", preset.n_distractor_eval, seed, training=False, avoid=seen)
    layouts = frozenset(s.layout() for split in (train, out["distractor_eval"]) for s in split.scenes.values())
    out["distractor_val"] = make_split("distractor_val", preset.n_distractor_val, seed, training=False,
                                       avoid_layouts=layouts)
    return out


@contextlib.contextmanager
def _rendering(image_folder: str, scenes: dict[str, Scene], log: Callable[[str], None]):
    """Writes the PNGs in background threads while the body runs (tokenizers, models); waits for them on exit.

    Threads, not processes: Pillow releases the GIL while it draws and encodes, and threads work wherever the
    caller runs (spawned processes fail under stdin scripts and notebooks; forked ones may inherit torch's locks).
    """
    for folder in {os.path.dirname(os.path.join(image_folder, path)) for path in scenes}:
        os.makedirs(folder, exist_ok=True)
    items = sorted(scenes.items())
    chunks = [items[i : i + IMAGE_CHUNK] for i in range(0, len(items), IMAGE_CHUNK)]
    with ThreadPoolExecutor(IMAGE_WORKERS, thread_name_prefix="tiny_world_png") as pool:
        futures = [pool.submit(save_pngs, image_folder, chunk) for chunk in chunks]
        try:
            yield
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for future in futures:
            future.result()  # re-raises a worker's error here
    log(f"rendered {len(items)} images")


def _layout(root: str, preset: Preset, version: int) -> dict[str, str]:
    """Where each manifest path key lives inside a world."""
    join = os.path.join
    paths = {
        "llava_llm": join(root, "llava", f"vicuna-{preset.name}"),
        "llava_vision_tower": join(root, "llava", f"clip-vit-{preset.name}-patch14-{preset.clip['image_size']}"),
        "qwen_model": join(root, "qwen", f"qwen2_5_vl-{preset.name}"),
        "image_folder": join(root, "images"),
        "scenes": join(root, "images", "scenes.json"),
        "llava_train_json": join(root, "data", "llava_train.json"),
        "llava_shift_train_json": join(root, "data", "llava_shift_train.json"),
        "qwen_train_json": join(root, "data", "qwen_train.json"),
        "qwen_shift_train_json": join(root, "data", "qwen_shift_train.json"),
        "mmpr_meta": join(root, "mmpr", "meta.json"),
        "eval_questions": join(root, "eval", "eval_questions.jsonl"),
        "eval_answers": join(root, "eval", "eval_answers.jsonl"),
        "shift_eval_questions": join(root, "eval", "shift_eval_questions.jsonl"),
        "shift_eval_answers": join(root, "eval", "shift_eval_answers.jsonl"),
    }
    if version >= 4:
        for split in ("shift_val", "distractor_val", "distractor_eval"):
            paths[f"{split}_questions"] = join(root, "eval", f"{split}_questions.jsonl")
            paths[f"{split}_answers"] = join(root, "eval", f"{split}_answers.jsonl")
        for backbone in ("llava", "qwen"):
            paths[f"{backbone}_distractor_train_json"] = join(root, "data", f"{backbone}_distractor_train.json")
    return paths


def _build_models(paths: dict[str, str], preset: Preset, seed: int, version: int,
                  log: Callable[[str], None]) -> None:
    # Imported here: transformers takes seconds to import, and load_manifest/score_answers users need none of it.
    from .models import save_clip_tower, save_llava_llm, save_qwen
    from .tokenization import train_llava_tokenizer, train_qwen_tokenizer

    lines = corpus_lines()
    with _no_progress_bars():
        t = time.perf_counter()
        llava_tokenizer = train_llava_tokenizer(lines, paths["llava_llm"], preset.llava_vocab_size)
        save_llava_llm(paths["llava_llm"], preset, len(llava_tokenizer), seed)
        save_clip_tower(paths["llava_vision_tower"], preset, seed, placed=version >= 5)
        log(f"saved the LLaVA LLM (vocab {len(llava_tokenizer)}) and CLIP tower in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        qwen_tokenizer = train_qwen_tokenizer(lines, preset.qwen_vocab_size)
        save_qwen(paths["qwen_model"], preset, qwen_tokenizer, seed)
        log(f"saved Qwen2.5-VL (vocab {len(qwen_tokenizer)}) in {time.perf_counter() - t:.1f} s")


@contextlib.contextmanager
def _no_progress_bars():
    """Silences transformers' per-save progress bars for the build, restoring the caller's setting after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
