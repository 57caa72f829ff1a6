"""Resuming with other generator settings (issue 12, item 7), both backbones, with and without DeepSpeed: a run resumed
into the same --output_dir with --ng_heads 4 → 2 (same tensor shapes, another meaning) is refused naming the flag,
the saved value and the new one, before anything is restored; so is adding or dropping the generator."""

import json
from pathlib import Path

import pytest
import torch

from mung.training.trainer import check_resume_generator
from noise_generator import GeneratorSettingsChanged, NoiseGenerator, NoiseGeneratorConfig, restore_generator, save_noise_generator
from tiny_runs import tiny_argv, tiny_data, train_as_child, train_in_process


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_resume_with_other_heads_is_refused_naming_the_flag(world, tmp_path, backbone):
    out = tmp_path / "out"
    argv = tiny_argv(backbone, world, tiny_data(world, backbone, tmp_path), world["image_folder"], out,
                     "--save_steps", "1", "--per_device_train_batch_size", "2")
    train_in_process(backbone, argv + ["--max_steps", "1"])
    assert (out / "checkpoint-1" / "noise_generator_config.json").is_file()
    with pytest.raises(ValueError, match=r"checkpoint-1 differs from the model's: --ng_heads 4 \(saved\) vs 2 "
                                         r"\(this run\)\..*--overwrite_output_dir True or a new --output_dir"):
        train_in_process(backbone, argv + ["--max_steps", "2", "--ng_heads", "2"])
    assert not (out / "checkpoint-2").exists()


def test_deepspeed_resume_with_other_heads_is_refused(world, tmp_path):
    """DeepSpeed restores the generator's tensors itself (same shapes): before, the run went on under the new setting."""
    config = json.loads((Path(__file__).resolve().parents[1] / "scripts" / "zero2.json").read_text())
    (tmp_path / "zero2.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    argv = tiny_argv("qwen", world, tiny_data(world, "qwen", tmp_path), world["image_folder"], out, "--save_steps",
                     "1", "--per_device_train_batch_size", "2", "--deepspeed", str(tmp_path / "zero2.json"))
    first = train_as_child("qwen", argv + ["--max_steps", "1"])
    assert first.returncode == 0, first.stderr[-3000:]
    second = train_as_child("qwen", argv + ["--max_steps", "2", "--ng_heads", "2"])
    assert second.returncode != 0
    assert "--ng_heads 4 (saved) vs 2 (this run)" in second.stderr, second.stderr[-3000:]
    assert not (out / "checkpoint-2").exists()


class _Host(torch.nn.Module):
    pass


def host_with(**settings) -> _Host:
    host = _Host()
    host.noise_generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=16, **settings))
    return host


def test_every_setting_but_the_inference_mode_counts_and_a_missing_generator_is_named(tmp_path):
    save_noise_generator(host_with(num_heads=4).noise_generator, tmp_path)
    check_resume_generator(host_with(num_heads=4, inference_mode="mean"), tmp_path)  # inference only: accepted
    restore_generator(host_with(num_heads=4, inference_mode="off"), tmp_path)
    with pytest.raises(ValueError, match=r"--ng_injection 'add' \(saved\) vs 'mul' \(this run\), "
                                         r"--ng_condition_on_answer True \(saved\) vs False"):
        check_resume_generator(host_with(num_heads=4, injection="mul", condition_on_answer=False), tmp_path)
    with pytest.raises(GeneratorSettingsChanged, match=r"num_heads 4 \(saved\) vs 2 \(this model\)") as caught:
        restore_generator(host_with(num_heads=2), tmp_path)
    assert caught.value.changes == [("num_heads", 4, 2)]
    with pytest.raises(ValueError, match="holds a noise generator but this run has none"):
        check_resume_generator(torch.nn.Linear(2, 2), tmp_path)
    with pytest.raises(ValueError, match="holds no noise generator but this run adds one"):
        check_resume_generator(host_with(num_heads=4), tmp_path / "elsewhere")
