"""Hostile and damaged pickle files (issue 12, items 1 and 2): nothing is ever unpickled with the full unpickler unless
the user trusts the checkpoint, and a refusal names the file (and the flag that trusts it) without torch's advice to
switch the weights-only reader off.

Every hostile file here is a ``torch.save``'d object whose ``__reduce__`` would run ``touch MARKER``; each test checks
the marker was never created."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from llava_builders import tiny_llava_config
from mung.checkpoints import read_tensor_file
from mung.loading import LoadOptions, load
from mung.paths import check_model_path
from mung.safe_pickles import RESUME_TYPES, UntrustedPickle, check_resume_files, named_globals
from tiny_runs import tiny_argv, tiny_data, train_as_child, train_in_process


def write_hostile(path: Path, marker: Path) -> Path:
    """A torch.save file whose unpickling would run ``touch marker``."""

    class RunsACommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.zeros(2), "payload": RunsACommand()}, path)
    return path


def assert_refused_without_advice(err: BaseException, path: Path) -> None:
    text = str(err)
    assert str(path) in text and "\n" not in text
    assert "weights_only" not in text and "WeightsUnpickler" not in text
    assert err.__suppress_context__  # torch's own error (and its advice) is not chained into the traceback


# --- item 2: reading tensor files and loading checkpoints ----------------------------------------------------------
def test_hostile_tensor_file_is_refused_naming_it_and_never_run(tmp_path):
    marker = tmp_path / "MARKER"
    path = write_hostile(tmp_path / "mm_projector.bin", marker)
    with pytest.raises(UntrustedPickle, match=r"Refusing to read .*mm_projector\.bin: it holds objects of types "
                                              r"\['posix\.system'\].*could run code") as caught:
        read_tensor_file(path)
    assert_refused_without_advice(caught.value, path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_tensor_file_is_reported_as_damaged(tmp_path, damage):
    path = tmp_path / "non_lora_trainables.bin"
    torch.save({"w": torch.arange(1000.0)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all\n")
    with pytest.raises(UntrustedPickle, match=r"Cannot read .*non_lora_trainables\.bin: .*corrupt.*re-save") as caught:
        read_tensor_file(path)
    assert_refused_without_advice(caught.value, path)


@pytest.mark.parametrize("kind", ["full", "projector"])
def test_loading_refuses_a_hostile_weight_file_before_any_weights_load(world, tmp_path, kind):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "ckpt"
    tiny_llava_config(world).save_pretrained(folder)
    name = "pytorch_model.bin" if kind == "full" else "mm_projector.bin"
    path = write_hostile(folder / name, marker)
    base = world["llava_llm"] if kind == "projector" else None
    with pytest.raises(UntrustedPickle, match=rf"Refusing to read .*{name}") as caught:
        load(str(folder), base, LoadOptions(device="cpu"))
    assert_refused_without_advice(caught.value, path)
    assert not marker.exists()


def test_training_base_with_a_hostile_weight_file_is_refused_at_start(tmp_path):
    marker = tmp_path / "MARKER"
    path = write_hostile(tmp_path / "base" / "pytorch_model.bin", marker)
    with pytest.raises(UntrustedPickle, match="Refusing to read"):
        check_model_path(str(tmp_path / "base"), "--model_name_or_path")
    assert not marker.exists() and path.exists()


# --- item 1: resuming ---------------------------------------------------------------------------------------------
def test_resume_check_lists_what_it_reads_and_trusting_skips_it(tmp_path):
    marker = tmp_path / "MARKER"
    checkpoint = tmp_path / "checkpoint-1"
    write_hostile(checkpoint / "global_step1" / "mp_rank_00_model_states.pt", marker)
    torch.save({"python": 1}, checkpoint / "scheduler.pt")
    (checkpoint / "training_args.bin").write_bytes(b"never read")
    with pytest.raises(UntrustedPickle, match=r"global_step1/mp_rank_00_model_states\.pt.*--trust_checkpoint True"):
        check_resume_files(checkpoint)
    assert [p.name for p in check_resume_files(checkpoint, trusted=True)] == ["mp_rank_00_model_states.pt",
                                                                             "scheduler.pt"]
    assert not marker.exists()


def fake_checkpoint(out: Path, step: int = 1, max_steps: int = 3) -> Path:
    """A ``checkpoint-N`` that automatic resume picks (it has a trainer_state.json of an unfinished run)."""
    checkpoint = out / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))
    return checkpoint


def test_crafted_rng_state_stops_a_resume_naming_the_file_and_the_flag(world, tmp_path):
    marker = tmp_path / "MARKER"
    data = tiny_data(world, "qwen", tmp_path)
    out = tmp_path / "out"
    rng = write_hostile(fake_checkpoint(out) / "rng_state.pth", marker)
    argv = tiny_argv("qwen", world, data, world["image_folder"], out, "--max_steps", "3")
    with pytest.raises(UntrustedPickle, match=r"--trust_checkpoint True") as caught:
        train_in_process("qwen", argv)
    assert_refused_without_advice(caught.value, rng)
    assert not marker.exists()


def deepspeed_config(name: str, folder: Path) -> str:
    config = json.loads((Path(__file__).resolve().parents[1] / "scripts" / f"{name}.json").read_text())
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("backbone, zero", [("llava", "zero2"), ("qwen", "zero3")])
def test_deepspeed_resume_reads_real_checkpoints_and_refuses_a_crafted_one(world, tmp_path, backbone, zero):
    """A real one-step DeepSpeed run; its checkpoint passes the check (Qwen: and resumes); the same checkpoint with a
    crafted global_step file stops the resume before DeepSpeed reads it."""
    data = tiny_data(world, backbone, tmp_path)
    out = tmp_path / "out"
    argv = tiny_argv(backbone, world, data, world["image_folder"], out, "--save_steps", "1",
                     "--per_device_train_batch_size", "2", "--deepspeed", deepspeed_config(zero, tmp_path))
    first = train_as_child(backbone, argv + ["--max_steps", "1"])
    assert first.returncode == 0, first.stderr[-3000:]
    checked = check_resume_files(out / "checkpoint-1")
    assert {"rng_state.pth", "scheduler.pt"} <= {p.name for p in checked}
    assert any(p.parent.name == "global_step1" for p in checked)
    assert set().union(*(named_globals(p) for p in checked)) - set(torch.serialization._weights_only_unpickler.
                                                                      _get_allowed_globals()) <= set(RESUME_TYPES)
    crafted_out = tmp_path / "crafted"
    shutil.copytree(out, crafted_out)
    marker = tmp_path / "MARKER"
    target = sorted((crafted_out / "checkpoint-1" / "global_step1").glob("*.pt"))[0]
    write_hostile(target, marker)
    crafted = train_as_child(backbone, [a if a != str(out) else str(crafted_out) for a in argv] + ["--max_steps", "2"])
    assert crafted.returncode != 0 and not marker.exists()
    refusal = [line for line in crafted.stderr.splitlines() if "UntrustedPickle: Refusing to read" in line]
    assert refusal and str(target) in refusal[-1] and "--trust_checkpoint True" in refusal[-1], crafted.stderr[-3000:]
    escaping_out = tmp_path / "escaping"  # issue 19 §1: the payload sits outside, where DeepSpeed's tag leads
    shutil.copytree(out, escaping_out)
    outside = tmp_path / "elsewhere" / "global_step1"
    shutil.move(str(escaping_out / "checkpoint-1" / "global_step1"), str(outside))
    write_hostile(sorted(outside.glob("*.pt"))[0], marker)
    if backbone == "llava":  # global_step1 a symbolic link to it
        (escaping_out / "checkpoint-1" / "global_step1").symlink_to(outside, target_is_directory=True)
    else:  # latest naming it by an absolute path (global_step1 left in place, empty, for the Trainer's test)
        (escaping_out / "checkpoint-1" / "global_step1").mkdir()
        (escaping_out / "checkpoint-1" / "latest").write_text(str(outside))
    escaping = train_as_child(backbone, [a if a != str(out) else str(escaping_out) for a in argv] + ["--max_steps", "2"])
    assert escaping.returncode == 2 and not marker.exists(), escaping.stderr[-3000:]
    assert escaping.stderr.strip().splitlines()[-1].startswith("error: OutsideCheckpoint: ")
    if backbone == "qwen":
        resumed = train_as_child(backbone, argv + ["--max_steps", "2"])
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


def test_the_types_deepspeed_writes_on_gpus_pass_the_check(tmp_path):
    """fp16 ZeRO runs (GPU only) save a DynamicLossScaler in their optimizer states; it passes like the CPU runs'
    LossScaler, and the check builds stand-ins, never DeepSpeed's objects."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    path = tmp_path / "global_step1" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    path.parent.mkdir()
    torch.save({"optimizer_state_dict": {
        "loss_scaler": DynamicLossScaler(init_scale=2**16, scale_window=1000, min_scale=1, delayed_shift=2,
                                         consecutive_hysteresis=False, raise_error_at_min_scale=True,
                                         dtype=torch.float16),
        "zero_stage": ZeroStageEnum.gradients, "param_slice_mappings": [{"w": fragment_address(numel=4, start=0)}],
        "fp32_flat_groups": [torch.zeros(4)]}}, path)
    assert named_globals(path) and check_resume_files(tmp_path) == [path]
