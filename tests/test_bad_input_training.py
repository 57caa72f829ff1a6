"""Bad input at the training entry points of both backbones: flag values refused before any weights load, and short
runs on data with bad samples and all-text batches that go on (skips counted in the log) or stop without losing
what was already written."""

import json
import sys
import time
from pathlib import Path

import pytest
import torch

from llava_noise.train.train import train as train_llava
from noise_generator import load_noise_generator_state
from qwen_noise.data import BadSample
from qwen_noise.train.train import train as train_qwen


def text_sample(k):
    return {"id": f"text-{k}", "conversations": [{"from": "human", "value": f"Say the colour number {k}."},
                                                 {"from": "gpt", "value": "red"}]}


BAD = {"id": "broken-image", "image": "does/not/exist.png",
       "conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]}


def qwen_argv(tiny_world, data_path, out, *extra):
    return ["--model_name_or_path", tiny_world["qwen_model"], "--data_path", str(data_path),
            "--image_folder", tiny_world["image_folder"], "--output_dir", str(out), "--tune", "noise",
            "--ng_heads", "4", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
            "--logging_steps", "1", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true", "--seed", "0",
            "--model_max_length", "256", *extra]


def llava_argv(tiny_world, data_path, out, *extra):
    return ["train", "--model_name_or_path", tiny_world["llava_llm"], "--vision_tower", tiny_world["llava_vision_tower"],
            "--version", "v1", "--data_path", str(data_path), "--image_folder", tiny_world["image_folder"],
            "--output_dir", str(out), "--tune_mm_mlp_adapter", "True", "--noise_generator", "True", "--ng_heads", "4",
            "--mm_projector_type", "mlp2x_gelu", "--mm_vision_select_layer", "-2", "--image_aspect_ratio", "pad",
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--logging_steps", "1",
            "--report_to", "none", "--use_cpu", "True", "--disable_tqdm", "True", "--seed", "0",
            "--model_max_length", "256", "--lazy_preprocess", "True", *extra]


# --- flag values refused up front ----------------------------------------------------------------------------------
def refused_fast(call, error, pattern):
    start = time.perf_counter()
    with pytest.raises(error, match=pattern):
        call()
    assert time.perf_counter() - start < 2, "refused only after loading weights"


@pytest.mark.parametrize("flag,value,pattern", [
    ("--ng_kind", "transformer", r"--ng_kind 'transformer' is not supported; choose one of cross_attn, mlp, gaussian"),
    ("--ng_injection", "concat", r"--ng_injection 'concat' is not supported; choose one of add, mul"),
    ("--on_bad_sample", "ignore", r"--on_bad_sample 'ignore' is not supported; use skip or raise"),
    ("--on_nonfinite", "zero", r"--on_nonfinite 'zero' is not supported; choose one of raise, skip_step"),
])
def test_qwen_refuses_unknown_flag_values_before_loading(tiny_world, tmp_path, flag, value, pattern):
    argv = qwen_argv(tiny_world, tmp_path / "d.json", tmp_path / "out", flag, value)
    refused_fast(lambda: train_qwen(argv), ValueError, pattern)


@pytest.mark.parametrize("flag,value,pattern", [
    ("--ng_kind", "transformer", r"--ng_kind 'transformer' is not supported"),
    ("--version", "vicuna_v9", r"--version 'vicuna_v9' is not a conversation template; use one of .*\bv1\b"),
    ("--on_bad_sample", "ignore", r"--on_bad_sample 'ignore' is not supported; use skip or raise"),
    ("--image_aspect_ratio", "anyres", r"--image_aspect_ratio 'anyres' is not supported; use square, pad"),
    ("--on_nonfinite", "zero", r"--on_nonfinite 'zero' is not supported"),
])
def test_llava_refuses_unknown_flag_values_before_loading(tiny_world, tmp_path, monkeypatch, flag, value, pattern):
    monkeypatch.setattr(sys, "argv", llava_argv(tiny_world, tmp_path / "d.json", tmp_path / "out", flag, value))
    refused_fast(train_llava, ValueError, pattern)


def test_unknown_flag_name_is_refused(tiny_world, tmp_path):
    argv = qwen_argv(tiny_world, tmp_path / "d.json", tmp_path / "out", "--ng_knd", "mlp")
    refused_fast(lambda: train_qwen(argv), ValueError, r"not used by the HfArgumentParser: \['--ng_knd', 'mlp'\]")


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_missing_model_name_or_path_fails_fast(backbone, tiny_world, tmp_path, monkeypatch):
    missing = str(tmp_path / "no" / "such-model")
    if backbone == "qwen":
        argv = qwen_argv(tiny_world, tmp_path / "d.json", tmp_path / "out")
        argv[1] = missing
        call = lambda: train_qwen(argv)  # noqa: E731
    else:
        argv = llava_argv(tiny_world, tmp_path / "d.json", tmp_path / "out")
        argv[2] = missing
        monkeypatch.setattr(sys, "argv", argv)
        call = train_llava
    refused_fast(call, FileNotFoundError, r"--model_name_or_path .*such-model does not exist")


# --- short runs ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_and_bad_data(tmp_path_factory):
    """Text-only samples (so every batch of a multimodal run is all-text) plus one sample whose image is missing."""
    path = tmp_path_factory.mktemp("bad_run") / "data.json"
    path.write_text(json.dumps([text_sample(k) for k in range(5)] + [BAD]))
    return path


def logged(out_dir, key):
    history = json.loads((Path(out_dir) / "trainer_state.json").read_text())["log_history"]
    return [h[key] for h in history if key in h]


@pytest.fixture(scope="module")
def qwen_skip_run(tiny_world, text_and_bad_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen_skip")
    train_qwen(qwen_argv(tiny_world, text_and_bad_data, out, "--max_steps", "3", "--save_steps", "100",
                         "--on_bad_sample", "skip", "--max_bad_sample_share", "0.5"))  # 1 of 6 bad: go on
    return out


@pytest.fixture(scope="module")
def llava_skip_run(tiny_world, text_and_bad_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("llava_skip")
    patch = pytest.MonkeyPatch()
    patch.setattr(sys, "argv", llava_argv(tiny_world, text_and_bad_data, out, "--max_steps", "3", "--save_steps", "100",
                                          "--on_bad_sample", "skip", "--max_bad_sample_share", "0.5"))
    try:
        train_llava()
    finally:
        patch.undo()
    return out


@pytest.mark.parametrize("run", ["qwen_skip_run", "llava_skip_run"])
def test_all_text_batches_train_with_finite_loss(request, run):
    out = request.getfixturevalue(run)
    losses = logged(out, "loss")
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    _, tensors = load_noise_generator_state(out)
    assert tensors and all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("run", ["qwen_skip_run", "llava_skip_run"])
def test_skipped_bad_sample_is_counted_in_the_log(request, run):
    out = request.getfixturevalue(run)
    counts = logged(out, "skipped_samples")
    assert counts and counts[-1] == 1  # 3 steps x 2 samples cover the 6 records: the bad one was met once


def test_stopping_on_a_bad_sample_keeps_earlier_checkpoints(tiny_world, text_and_bad_data, tmp_path):
    """Batch size 1 over a shuffled data set: the bad sample stops the run at some step; each checkpoint saved before
    stays complete and loadable."""
    out = tmp_path / "out"
    argv = qwen_argv(tiny_world, text_and_bad_data, out, "--max_steps", "6", "--save_steps", "1",
                     "--per_device_train_batch_size", "1", "--on_bad_sample", "raise", "--seed", "3")
    with pytest.raises(BadSample, match=r"broken-image: image .*does/not/exist\.png does not exist"):
        train_qwen(argv)
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints, "seed 3 should meet the bad sample after the first step"
    for folder in checkpoints:
        config, tensors = load_noise_generator_state(folder)
        assert (folder / "trainer_state.json").is_file() and set(tensors) >= {"q_proj.weight", "mu_proj.weight"}
