"""Tiny checkpoints of transformers' own VLM families, built on demand beside a world.

``build_families(world_dir, names)`` writes ``world_dir/families/<name>/`` for each family (model, processor, chat
template, generation config: ``AutoModelForImageTextToText`` and ``AutoProcessor`` load it offline) and
``world_dir/families/manifest.json`` (``{"version", "preset", "seed", "families": {name: relative path}}``); another
``out_dir`` keeps them out of the world's own folder (the tests do, so a world folder stays exactly what
``tiny_world.build`` wrote). A
family already built with the same preset, seed and version is reused, so callers (tests, demos) can ask for it
lazily. The default world (``tiny_world.build``) does not build them: ``python -m tiny_world --families all``
does.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Iterable, Optional

FAMILIES_DIR = "families"
FAMILIES_MANIFEST = "manifest.json"
# Bump whenever a family's output changes, so stale family folders are rebuilt instead of reused.
FAMILIES_VERSION = 1
_SEED_OFFSET = 8  # after the world's own model seeds (tiny_world.models uses offsets 0..2)


def family_names() -> list[str]:
    from .family_specs import FAMILIES

    return list(FAMILIES)


def family_tokenizer(base_tokenizer_dir: str, family):
    """The world's BPE tokenizer with ``family``'s special tokens (named ones become tokenizer attributes)."""
    from transformers import AutoTokenizer

    specials = {"eos_token": family.eos}
    if family.bos:
        specials["bos_token"] = family.bos
    tokenizer = AutoTokenizer.from_pretrained(base_tokenizer_dir, extra_special_tokens=dict(family.named), **specials)
    tokenizer.add_special_tokens({"additional_special_tokens": list(family.extra)},
                                 replace_extra_special_tokens=False)
    return tokenizer


def make_family(base_tokenizer_dir: str, name: str, preset: str = "tiny", seed: int = 0):
    """(random model, processor) of family ``name`` at ``preset``'s shapes, in memory."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from .family_specs import FAMILIES, SIZES

    family, size = FAMILIES[name], SIZES[preset]
    processor = family.processor(family_tokenizer(base_tokenizer_dir, family), size)
    tokenizer = processor.tokenizer  # some processors add their own tokens while they are built
    config = family.config(tokenizer, size)
    torch.manual_seed(seed * 16 + _SEED_OFFSET + sorted(FAMILIES).index(name))
    model = AutoModelForImageTextToText.from_config(config)
    _randomise_zero_matrices(model)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in (family.eos, family.end_of_turn) if t]
    model.generation_config = GenerationConfig(eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=tokenizer.bos_token_id)
    return model, processor


def build_family(out_dir: str, base_tokenizer_dir: str, name: str, preset: str = "tiny", seed: int = 0) -> str:
    """Write the tiny checkpoint of family ``name`` into ``out_dir``; returns it."""
    model, processor = make_family(base_tokenizer_dir, name, preset, seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def _randomise_zero_matrices(model) -> None:
    """Give weight matrices that a family initialises to zeros (e.g. Gemma 3's image projection, which real
    checkpoints train) small random values, so a tiny random model passes image information to its LLM."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and not param.any():
                param.normal_(0.0, 0.02)


def build_families(world_dir: str, names: Optional[Iterable[str]] = None, verbose: bool = True,
                   out_dir: Optional[str] = None) -> dict[str, str]:
    """Build (or reuse) the family checkpoints ``names`` (default: all) of the world in ``world_dir`` into
    ``out_dir`` (default ``world_dir/families``); returns ``{name: absolute folder}`` of every family listed there."""
    from .builder import _no_progress_bars
    from .family_specs import FAMILIES
    from .manifest import load_manifest

    world = load_manifest(world_dir)
    wanted = list(names) if names is not None else family_names()
    unknown = sorted(set(wanted) - set(family_names()))
    if unknown:
        raise ValueError(f"unknown tiny VLM families {unknown}; choose from {family_names()}")
    root = os.path.abspath(out_dir or os.path.join(world_dir, FAMILIES_DIR))
    manifest = _read(root, world["preset"], world["seed"])
    for name in wanted:
        if name in manifest["families"] and os.path.isdir(os.path.join(root, manifest["families"][name])):
            continue
        missing = FAMILIES[name].missing_modules()
        if missing:
            if verbose:
                print(f"[tiny_world] skipped the {name} family: transformers needs {missing} for its processor "
                      f"(pip install {' '.join(missing)})", flush=True)
            continue
        staging = os.path.join(root, f".{name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with _no_progress_bars():
                build_family(staging, world["qwen_model"], name, world["preset"], world["seed"])
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            os.rename(staging, os.path.join(root, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        manifest["families"][name] = name
        _write(root, manifest)
        if verbose:
            print(f"[tiny_world] built the {name} family checkpoint", flush=True)
    return {name: os.path.join(root, rel) for name, rel in sorted(manifest["families"].items())}


def _read(root: str, preset: str, seed: int) -> dict:
    """The families manifest of ``root`` when it matches this preset, seed and version; else an empty one."""
    empty = {"version": FAMILIES_VERSION, "preset": preset, "seed": seed, "families": {}}
    path = os.path.join(root, FAMILIES_MANIFEST)
    if not os.path.isfile(path):
        return empty
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    if (manifest.get("version"), manifest.get("preset"), manifest.get("seed")) != (FAMILIES_VERSION, preset, seed):
        return empty
    return manifest


def _write(root: str, manifest: dict) -> None:
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, FAMILIES_MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({**manifest, "families": dict(sorted(manifest["families"].items()))}, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, os.path.join(root, FAMILIES_MANIFEST))
