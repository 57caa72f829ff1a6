"""The quickstart's ``--backbone <family>`` (scripts/quickstart_backbones.py): every tiny transformers VLM family is a
backbone of the quickstart with the generic recipes and commands, and its start model is the family checkpoint built
into the world. The suite runs ``quickstart.py --fast`` for Gemma 3; ``MUNG_VLM_FAMILIES=all`` for every family (the
by-hand run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_quickstart import REPO, SCRIPT, load_quickstart_module
from tiny_world import family_names

# The quickstart's name of each family: transformers' LLaVA format is llava_hf (llava is LLaVA-1.5).
NAMES = sorted(("llava_hf" if name == "llava" else name) for name in family_names())
FAST_FAMILIES = NAMES if os.environ.get("MUNG_VLM_FAMILIES") == "all" else ["gemma3"]


def linked_world(tiny_world, root: Path) -> Path:
    """A world folder whose files are the session world's (symlinks), so families built into it stay in ``root``."""
    world = Path(tiny_world["image_folder"]).parent
    root.mkdir(parents=True, exist_ok=True)
    for entry in world.iterdir():
        if entry.name != "families":
            (root / entry.name).symlink_to(entry)
    return root


def test_every_family_is_a_backbone_with_the_generic_recipes_and_commands():
    quickstart = load_quickstart_module()
    assert quickstart.BACKBONES["llava"].base_recipe == "scripts/v1_5/finetune.sh"  # LLaVA-1.5 keeps its name
    for name in NAMES:
        backbone = quickstart.BACKBONES[name]
        assert quickstart.parse_args(["--backbone", name]).backbone == name
        assert (backbone.base_recipe, backbone.mung_recipe) == ("scripts/vlm/finetune_full.sh",
                                                                 "scripts/vlm/finetune_noise.sh")
        assert (backbone.eval_module, backbone.cli_module) == ("mung.eval.model_vqa_loader", "mung.serve.cli")
        assert backbone.control_recipe == "scripts/vlm/finetune_lora.sh"
        assert all((REPO / recipe).is_file() for recipe in (backbone.base_recipe, backbone.mung_recipe,
                                                            backbone.control_recipe))
        plan = quickstart.PLANS[name]
        assert plan.base.projector_lr is None  # the generic recipes have no connector lr flag
    env = quickstart.training_env(quickstart.BACKBONES["gemma3"], quickstart.PLANS["gemma3"].base, "m", "d.json",
                                  {"image_folder": "images"}, Path("out"), seed=3)
    assert env["GLOBAL_BATCH"] == 16 and env["BATCH_SIZE"] == 16 and "--seed 3" in env["EXTRA_ARGS"]


def test_a_familys_start_model_is_its_checkpoint_built_into_the_world(tiny_world, tmp_path):
    import quickstart_backbones  # importable once the quickstart module put scripts/ on the path

    load_quickstart_module()
    world = linked_world(tiny_world, tmp_path / "world")
    folder = quickstart_backbones.start_model("llava_hf", str(world))
    assert folder == str(world / "families" / "llava") and (Path(folder) / "config.json").is_file()
    assert json.load(open(Path(folder) / "config.json"))["model_type"] == "llava"
    for bespoke in ("llava", "qwen"):  # LLaVA-1.5 and Qwen2.5-VL start from the world's own models
        assert quickstart_backbones.start_model(bespoke, str(world)) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST_FAMILIES)
def test_the_fast_quickstart_runs_for_the_family(name, tiny_world, tmp_path):
    world = linked_world(tiny_world, tmp_path / "world")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--fast", "--backbone", name, "--tiny-world", str(world),
                           "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / name / "quickstart_report.json").read_text())
    assert report["backbone"] == name and report["after"]["n"] == 5 and report["cli"]["reply"] is not None
