"""Shared fixtures."""

import os

import pytest

from tiny_world import build as build_tiny_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict:
    """Manifest (absolute paths) of the tiny preset, seed 0, built once per session. Treat it as read-only.

    Set MUNG_TINY_WORLD=DIR to build into DIR once and reuse it across sessions.
    """
    out_dir = os.environ.get("MUNG_TINY_WORLD") or str(tmp_path_factory.mktemp("tiny_world"))
    return build_tiny_world(out_dir, preset="tiny", seed=0, verbose=False)


@pytest.fixture(scope="session")
def world(tiny_world) -> dict:
    """The tiny world under the short name the LLaVA tests use."""
    return tiny_world


@pytest.fixture(scope="session")
def vlm_families(tiny_world, tmp_path_factory) -> dict:
    """{family: checkpoint folder} of the tiny transformers VLM families, plus the world's own Qwen2.5-VL. Treat
    them as read-only. Built once per session outside the world's folder; with MUNG_TINY_WORLD=DIR they go to
    DIR_families and are reused across sessions."""
    from tiny_world import build_families

    shared = os.environ.get("MUNG_TINY_WORLD")
    out_dir = shared.rstrip(os.sep) + "_families" if shared else str(tmp_path_factory.mktemp("vlm_families"))
    folders = build_families(os.path.dirname(tiny_world["image_folder"]), verbose=False, out_dir=out_dir)
    folders["qwen2_5_vl"] = tiny_world["qwen_model"]
    return folders
