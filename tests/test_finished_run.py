"""Re-running a finished run into the same --output_dir, both backbones: it says the run is finished, changes no file
and exits 0 (before: it resumed from the last checkpoint and trained one more step at learning rate 0);
--overwrite_output_dir True trains again from scratch. Plus the decision itself on hand-written trainer states."""

import json

import pytest

from mung.training.runs import checkpoint_to_resume, clear_earlier_run, finished_run_message
from tiny_runs import folder_snapshot, tiny_argv, train_as_child, train_in_process

BACKBONES = ("llava", "qwen")
STEPS = 3


@pytest.fixture(scope="module", params=BACKBONES)
def finished(request, world, tmp_path_factory):
    """(backbone, argv, output_dir) of a finished 3-step run that saved checkpoint-2 and checkpoint-3."""
    backbone = request.param
    root = tmp_path_factory.mktemp(f"finished_{backbone}")
    key = "llava_train_json" if backbone == "llava" else "qwen_train_json"
    (root / "data.json").write_text(json.dumps(json.loads(open(world[key]).read())[:12]))
    out = root / "out"
    argv = tiny_argv(backbone, world, root / "data.json", world["image_folder"], out, "--max_steps", str(STEPS),
                     "--save_steps", "2", "--save_total_limit", "3", "--per_device_train_batch_size", "2")
    train_in_process(backbone, argv)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    return backbone, argv, out


def test_rerun_of_a_finished_run_changes_nothing_and_says_so(finished):
    backbone, argv, out = finished
    before = folder_snapshot(out)
    result = train_as_child(backbone, argv)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (f"output_dir {out} already holds a finished run (step 3 of 3); nothing to do. Use --overwrite_output_dir "
            "True to train again from scratch, or a new --output_dir.") in result.stdout
    after = folder_snapshot(out)
    assert sorted(after) == sorted(before)  # no checkpoint-4, no new file
    assert [name for name in before if before[name] != after[name]] == []  # same sizes, mtimes and bytes


def test_overwrite_output_dir_trains_again_from_scratch(finished):
    backbone, argv, out = finished
    stale = out / "checkpoint-7"  # from some longer earlier run: must not survive a fresh start
    stale.mkdir()
    (stale / "trainer_state.json").write_text(json.dumps({"global_step": 7, "max_steps": 7}))
    state_before = (out / "trainer_state.json").stat().st_mtime_ns
    train_in_process(backbone, argv + ["--overwrite_output_dir", "True"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert (out / "trainer_state.json").stat().st_mtime_ns > state_before
    assert state["global_step"] == STEPS and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]


# --- the decision, on hand-written trainer states ---------------------------------------------------------------------
def write_state(folder, step, total):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": total}))


def test_final_state_at_max_steps_is_finished(tmp_path):
    write_state(tmp_path, 30, 30)
    assert finished_run_message(tmp_path) == (
        f"output_dir {tmp_path} already holds a finished run (step 30 of 30); nothing to do. Use "
        "--overwrite_output_dir True to train again from scratch, or a new --output_dir.")


def test_last_checkpoint_at_max_steps_is_finished_without_a_final_save(tmp_path):
    write_state(tmp_path / "checkpoint-15", 15, 30)
    write_state(tmp_path / "checkpoint-30", 30, 30)
    assert "(step 30 of 30)" in finished_run_message(tmp_path)


def test_unfinished_or_extended_runs_are_resumed(tmp_path):
    write_state(tmp_path / "checkpoint-15", 15, 30)
    assert finished_run_message(tmp_path) is None  # killed half way: resume
    write_state(tmp_path / "checkpoint-30", 30, 30)
    assert finished_run_message(tmp_path, max_steps=60) is None  # --max_steps asks for more
    write_state(tmp_path, 30, 30)
    write_state(tmp_path / "checkpoint-45", 45, 60)  # an extension to 60 steps, killed at 45
    assert finished_run_message(tmp_path) is None
    (tmp_path / "checkpoint-50").mkdir()  # a state-less checkpoint (the tests' "{}" states too) decides nothing
    (tmp_path / "checkpoint-50" / "trainer_state.json").write_text("{}")
    assert finished_run_message(tmp_path) is None


def test_explicit_finished_checkpoint_is_named(tmp_path):
    write_state(tmp_path / "checkpoint-30", 30, 30)
    message = finished_run_message(tmp_path / "elsewhere", resume_from_checkpoint=str(tmp_path / "checkpoint-30"))
    assert message.startswith(f"--resume_from_checkpoint {tmp_path / 'checkpoint-30'} is a finished run (step 30 of 30)")


def test_overwrite_clears_the_earlier_run_and_refuses_an_explicit_resume(tmp_path):
    write_state(tmp_path / "checkpoint-30", 30, 30)
    write_state(tmp_path, 30, 30)
    (tmp_path / "config.json").write_text("{}")
    assert checkpoint_to_resume(None, tmp_path, overwrite_output_dir=True) is None
    assert clear_earlier_run(tmp_path) == ["checkpoint-30", "trainer_state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    with pytest.raises(ValueError, match="--overwrite_output_dir starts from scratch but --resume_from_checkpoint"):
        checkpoint_to_resume(str(tmp_path / "checkpoint-30"), tmp_path, overwrite_output_dir=True)
