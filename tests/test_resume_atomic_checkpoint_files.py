"""Checkpoint files are written atomically: a save that dies half-way leaves the previous complete file (or none),
never a partial one; and resuming picks the newest checkpoint that was written to the end."""

import os

import pytest
import torch
from torch import nn

import noise_generator.io as generator_io
from llava_noise.model import checkpoint_io
from noise_generator import NoiseGenerator, NoiseGeneratorConfig, WEIGHTS_NAME, save_noise_generator
from mung.files import save_pretrained_atomically
from mung.training.runs import checkpoint_to_resume, last_complete_checkpoint


class HalfWritten(RuntimeError):
    pass


def die_half_way(real_write):
    """A writer that puts half of the real bytes on disk, then dies (as a process killed mid-write would)."""

    def write(obj, target, *args, **kwargs):
        real_write(obj, target, *args, **kwargs)
        path = target if isinstance(target, (str, os.PathLike)) else target.name
        if not isinstance(target, (str, os.PathLike)):
            target.flush()
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
        raise HalfWritten(path)

    return write


class WithProjector(nn.Module):
    def __init__(self):
        super().__init__()
        self.mm_projector = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8))


def test_failed_projector_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    model = WithProjector()
    checkpoint_io.save_projector(model, tmp_path)
    before = (tmp_path / checkpoint_io.PROJECTOR_FILE).read_bytes()
    with torch.no_grad():
        model.mm_projector[0].weight.add_(1.0)
    monkeypatch.setattr(checkpoint_io.torch, "save", die_half_way(torch.save))
    with pytest.raises(HalfWritten):
        checkpoint_io.save_projector(model, tmp_path)
    assert (tmp_path / checkpoint_io.PROJECTOR_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_io.PROJECTOR_FILE]


def test_failed_first_non_lora_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_io.torch, "save", die_half_way(torch.save))
    with pytest.raises(HalfWritten):
        checkpoint_io.save_non_lora_trainables(WithProjector(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_generator_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=16, num_heads=2))
    save_noise_generator(generator, tmp_path)
    before = (tmp_path / WEIGHTS_NAME).read_bytes()
    with torch.no_grad():
        generator.q_proj.weight.add_(1.0)
    monkeypatch.setattr(generator_io, "save_file", die_half_way(generator_io.save_file))
    with pytest.raises(HalfWritten):
        save_noise_generator(generator, tmp_path)
    assert (tmp_path / WEIGHTS_NAME).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def make_checkpoint(root, step, complete=True):
    folder = root / f"checkpoint-{step}"
    folder.mkdir()
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return str(folder)


def test_resume_picks_the_newest_complete_checkpoint_by_step_number(tmp_path):
    make_checkpoint(tmp_path, 9)
    newest = make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 12, complete=False)  # killed while saving
    (tmp_path / "checkpoint-notes").mkdir()
    assert last_complete_checkpoint(tmp_path) == newest
    assert checkpoint_to_resume(None, tmp_path) == newest
    assert checkpoint_to_resume("last", tmp_path) == newest


def test_fresh_output_dir_starts_from_scratch(tmp_path):
    assert checkpoint_to_resume(None, tmp_path / "missing") is None
    assert checkpoint_to_resume(None, tmp_path) is None


def test_explicit_incomplete_checkpoint_is_refused_with_the_path(tmp_path):
    partial = make_checkpoint(tmp_path, 12, complete=False)
    with pytest.raises(FileNotFoundError, match="checkpoint-12.*trainer_state.json"):
        checkpoint_to_resume(partial, tmp_path)


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)

    def forward(self, x):
        return self.down(self.up(x))


def lora_model():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["up", "down"], init_lora_weights=False)
    return get_peft_model(TwoLayers(), config)


def test_atomic_adapter_save_writes_what_peft_writes(tmp_path):
    model = lora_model()
    model.save_pretrained(tmp_path / "plain")
    written = save_pretrained_atomically(model, tmp_path / "atomic")
    plain = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert sorted(written) == plain == sorted(p.name for p in (tmp_path / "atomic").iterdir())
    assert written.index("adapter_model.safetensors") < written.index("adapter_config.json")  # weights land first
    for name in plain:
        assert (tmp_path / "atomic" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name


def test_failed_adapter_save_keeps_the_previous_adapter_and_leaves_no_staging(tmp_path, monkeypatch):
    import peft.peft_model

    model = lora_model()
    save_pretrained_atomically(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with torch.no_grad():
        model.base_model.model.up.lora_A["default"].weight.add_(1.0)
    monkeypatch.setattr(peft.peft_model, "safe_save_file", die_half_way(peft.peft_model.safe_save_file))
    with pytest.raises(HalfWritten):
        save_pretrained_atomically(model, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
