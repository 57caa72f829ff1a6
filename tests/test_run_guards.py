"""Flags that do nothing but look fine (issue 12, item 8), both backbones: ``--max_steps 0`` (and no steps at all) is
refused before anything loads; ``--on_nonfinite skip_step`` that dropped every batch fails the run at its last step,
so no final checkpoint claims a finished run (before: exit 0 with a logged loss of 0)."""


import pytest
import torch
from transformers import TrainerCallback

from mung.training.flags import check_run_length
from mung.training.nonfinite import NonFiniteError
from noise_generator import find_noise_generator
from tiny_runs import tiny_argv, tiny_data, train_in_process


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_a_run_of_no_steps_is_refused_before_loading(world, tmp_path, backbone):
    argv = tiny_argv(backbone, world, tiny_data(world, backbone, tmp_path), world["image_folder"], tmp_path / "out")
    with pytest.raises(ValueError, match=r"--max_steps 0 trains nothing; pass a positive number of steps"):
        train_in_process(backbone, argv + ["--max_steps", "0"])
    with pytest.raises(ValueError, match=r"--num_train_epochs 0.0 trains nothing"):
        train_in_process(backbone, argv + ["--num_train_epochs", "0"])
    assert not (tmp_path / "out").exists()
    check_run_length(-1, 3.0)  # the defaults
    check_run_length(5, 0)  # steps given: epochs do not matter


class PoisonEveryTrainingCall(TrainerCallback):
    """Makes the generator's output NaN on every training call (from the start of training)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def poison(module, inputs, output):
            if module.training and isinstance(output.image_embeds, torch.Tensor):  # a padded call
                output.image_embeds = output.image_embeds * float("nan")
            elif module.training:
                output.image_embeds = [x * float("nan") for x in output.image_embeds]
            return output

        find_noise_generator(model).register_forward_hook(poison)


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_skip_step_that_dropped_every_batch_fails_the_run(world, tmp_path, backbone):
    out = tmp_path / "out"
    argv = tiny_argv(backbone, world, tiny_data(world, backbone, tmp_path), world["image_folder"], out,
                     "--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "2",
                     "--on_nonfinite", "skip_step")
    with pytest.raises(NonFiniteError, match=r"Every one of the 2 batches of this run had a NaN/inf .*dropped "
                                             r"\(--on_nonfinite skip_step\): nothing was trained"):
        train_in_process(backbone, argv, callbacks=[PoisonEveryTrainingCall()])
    assert (out / "checkpoint-1").is_dir()  # saved mid-run, as every run does
    assert not (out / "checkpoint-2").exists() and not (out / "trainer_state.json").exists()
