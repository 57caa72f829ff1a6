"""Issue 19 §1: a check reads exactly the files its loader will open. DeepSpeed resumes from the folder its ``latest``
tag names (joined onto the checkpoint folder, symbolic links followed); transformers loads the shards an index's
``weight_map`` names, whatever they are called. Every crafted file here would run ``touch MARKER`` when unpickled;
each test checks the marker never appears and the refusal names the file."""

import json
import os
from pathlib import Path

import pytest
import torch

from llava_builders import tiny_llava_config
from mung.loading import LoadOptions, load
from mung.safe_pickles import (
    OutsideCheckpoint,
    UntrustedPickle,
    check_resume_files,
    check_weight_pickles,
    deepspeed_tag_folders,
)
from test_hostile_files import assert_refused_without_advice, fake_checkpoint, write_hostile
from tiny_runs import tiny_argv, tiny_data, train_as_child


def deepspeed_checkpoint(out: Path, tag: str, marker: Path, elsewhere: Path) -> Path:
    """A resumable ``checkpoint-1`` with an innocent ``global_step1/`` and a ``latest`` holding ``tag``; the hostile
    model-states file DeepSpeed would unpickle sits in ``elsewhere`` (outside the checkpoint)."""
    checkpoint = fake_checkpoint(out)
    (checkpoint / "global_step1").mkdir()
    torch.save({"w": torch.zeros(1)}, checkpoint / "global_step1" / "mp_rank_00_model_states.pt")
    write_hostile(elsewhere / "mp_rank_00_model_states.pt", marker)
    (checkpoint / "latest").write_text(tag)
    return checkpoint


def escaping_tags(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere" / "global_step9"
    return {"absolute": str(elsewhere), "dotdot": "../../elsewhere/global_step9"}


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_a_latest_tag_leading_out_of_the_checkpoint_is_refused_naming_it(tmp_path, how):
    marker = tmp_path / "MARKER"
    tag = escaping_tags(tmp_path)[how]
    checkpoint = deepspeed_checkpoint(tmp_path / "out", tag, marker, tmp_path / "elsewhere" / "global_step9")
    with pytest.raises(OutsideCheckpoint) as caught:
        check_resume_files(checkpoint)
    text = str(caught.value)
    assert str(checkpoint / "latest") in text and repr(tag) in text and "\n" not in text
    with pytest.raises(OutsideCheckpoint):  # trusting the files does not trust a tag that leads elsewhere
        check_resume_files(checkpoint, trusted=True)
    assert not marker.exists()


def test_a_symlinked_global_step_folder_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    outside = tmp_path / "elsewhere" / "global_step1"
    write_hostile(outside / "mp_rank_00_model_states.pt", marker)
    checkpoint = fake_checkpoint(tmp_path / "out")
    (checkpoint / "global_step1").symlink_to(outside, target_is_directory=True)
    (checkpoint / "latest").write_text("global_step1")
    with pytest.raises(OutsideCheckpoint, match=r"latest .*'global_step1'.* leads to .*elsewhere/global_step1"):
        check_resume_files(checkpoint)
    assert not marker.exists()


def test_a_symlinked_trainer_file_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    checkpoint = fake_checkpoint(tmp_path / "out")
    (checkpoint / "rng_state.pth").symlink_to(write_hostile(tmp_path / "elsewhere.pth", marker))
    with pytest.raises(OutsideCheckpoint, match=r"symbolic link .*rng_state\.pth leads to .*elsewhere\.pth"):
        check_resume_files(checkpoint)
    assert not marker.exists()


def test_a_tag_folder_of_any_name_inside_the_checkpoint_is_what_gets_checked(tmp_path):
    """DeepSpeed loads whatever ``latest`` names; the check follows it (here a folder not called global_step*)."""
    marker = tmp_path / "MARKER"
    checkpoint = fake_checkpoint(tmp_path / "out")
    (checkpoint / "global_step1").mkdir()
    (checkpoint / "states").symlink_to(tmp_path / "out" / "checkpoint-1" / "global_step1")
    hostile = write_hostile(checkpoint / "global_step1" / "zero_pp_rank_0_mp_rank_00_optim_states.pt", marker)
    (checkpoint / "latest").write_text("states")
    assert deepspeed_tag_folders(checkpoint) == [Path(os.path.realpath(checkpoint / "global_step1"))]
    with pytest.raises(UntrustedPickle, match="Refusing to read") as caught:
        check_resume_files(checkpoint)
    assert_refused_without_advice(caught.value, hostile)
    assert not marker.exists()


def test_a_resume_whose_latest_tag_leaves_the_folder_stops_with_one_line(world, tmp_path):
    """The real entry point: the run ends with one ``error: OutsideCheckpoint`` line, status 2, and no payload ran."""
    marker = tmp_path / "MARKER"
    out = tmp_path / "out"
    deepspeed_checkpoint(out, escaping_tags(tmp_path)["absolute"], marker, tmp_path / "elsewhere" / "global_step9")
    data = tiny_data(world, "qwen", tmp_path)
    result = train_as_child("qwen", tiny_argv("qwen", world, data, world["image_folder"], out, "--max_steps", "3"))
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: OutsideCheckpoint:") and "latest" in errors[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists()


# --- shards an index names ------------------------------------------------------------------------------------------
def indexed_checkpoint(world, folder: Path, shard_names: list[str]) -> Path:
    tiny_llava_config(world).save_pretrained(folder)
    weight_map = {f"model.layers.{i}.weight": name for i, name in enumerate(shard_names)}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.mark.parametrize("shard", ["weights-part-a.data", "shard.pt"])
def test_a_shard_of_any_name_is_checked_and_refused_naming_it(world, tmp_path, shard):
    marker = tmp_path / "MARKER"
    folder = indexed_checkpoint(world, tmp_path / "ckpt", [shard])
    hostile = write_hostile(folder / shard, marker)
    with pytest.raises(UntrustedPickle, match=rf"Refusing to read .*{shard}") as caught:
        load(str(folder), None, LoadOptions(device="cpu"))
    assert_refused_without_advice(caught.value, hostile)
    assert not marker.exists()


@pytest.mark.parametrize("shard", ["../outside.bin", "/tmp/outside.bin"])
def test_an_index_naming_a_shard_outside_the_folder_is_refused(world, tmp_path, shard):
    folder = indexed_checkpoint(world, tmp_path / "ckpt", [shard])
    with pytest.raises(OutsideCheckpoint, match=r"pytorch_model\.bin\.index\.json names the shard") as caught:
        check_weight_pickles(folder)
    assert repr(shard) in str(caught.value)
