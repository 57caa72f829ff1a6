"""Tiny checkpoints of transformers VLM families: offline loadable with their processor and chat template,
byte-deterministic, reused when already built."""

import hashlib
import json
import os

import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor, ProcessorMixin

from tiny_world import build_families
from tiny_world.families import FAMILIES_DIR, build_family
from tiny_world.family_specs import FAMILIES
from vlm_helpers import family_folder


def digests(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_loads_offline_with_its_processor_and_template(name, vlm_families):
    folder = family_folder(vlm_families, name)
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    assert isinstance(processor, ProcessorMixin), type(processor)  # not a bare tokenizer
    assert processor.chat_template and processor.image_processor is not None
    model, info = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["model_type"] == FAMILIES[name].model_type
    assert model.get_input_embeddings().weight.shape[0] >= len(processor.tokenizer)
    for token in FAMILIES[name].named.values():
        assert token in processor.tokenizer.get_vocab(), token


def test_a_family_build_is_byte_deterministic(tiny_world, tmp_path):
    base = tiny_world["qwen_model"]
    for name in ("gemma3", "qwen3_vl"):
        first = build_family(str(tmp_path / f"{name}-a"), base, name)
        second = build_family(str(tmp_path / f"{name}-b"), base, name)
        assert digests(first) == digests(second)
    other_seed = build_family(str(tmp_path / "gemma3-seed1"), base, "gemma3", seed=1)
    assert digests(other_seed)["model.safetensors"] != digests(tmp_path / "gemma3-a")["model.safetensors"]


def test_built_families_are_reused_and_listed(vlm_families, tiny_world):
    root = os.path.dirname(tiny_world["image_folder"])
    out_dir = os.path.dirname(vlm_families["gemma3"])
    manifest = os.path.join(out_dir, "manifest.json")
    before = os.stat(manifest).st_mtime_ns
    again = build_families(root, verbose=False, out_dir=out_dir)
    assert os.stat(manifest).st_mtime_ns == before
    assert {k: v for k, v in vlm_families.items() if k != "qwen2_5_vl"} == again
    listed = json.load(open(manifest))
    assert listed["version"] >= 1 and listed["preset"] == "tiny" and set(listed["families"]) == set(again)
    with pytest.raises(ValueError, match="unknown tiny VLM families"):
        build_families(root, ["llava", "nope"], verbose=False, out_dir=out_dir)
    assert not os.path.exists(os.path.join(root, FAMILIES_DIR))  # the world's own folder is left as built
