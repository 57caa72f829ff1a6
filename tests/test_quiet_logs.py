"""What a user sees in every log: expected dependency messages are gone or summarised in one line, actionable ones
stay. ``--help`` of both entry points and a tiny run of each, as child processes (the output a user reads)."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

from mung.known_log_messages import install_known_message_filters
from tiny_runs import tiny_argv, train_as_child

KERNELS_HINT = "pip install kernels"
BNB_LOGGER = "bitsandbytes.backends.cpu.ops"


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_help_is_only_the_help(backbone):
    result = train_as_child(backbone, ["--help"], timeout=120)
    assert result.returncode == 0
    assert "--max_bad_sample_share" in result.stdout and "--overwrite_output_dir" in result.stdout
    assert KERNELS_HINT not in result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr[-2000:]


# One per import path a user starts from (shared eval, shared chat, the generic trainer, Gradio's demo, a scorer).
ENTRY_POINTS = ["mung.eval.model_vqa_loader", "mung.serve.cli", "vlm_noise.train.train", "llava_noise.serve.web",
                "mung.eval.eval_pope"]


@pytest.fixture(scope="module")
def helps():
    """``python -m MODULE --help`` of every entry point, started at once (each needs its own fresh process)."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    running = {module: subprocess.Popen([sys.executable, "-m", module, "--help"], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env) for module in ENTRY_POINTS}
    outputs = {module: process.communicate(timeout=240) for module, process in running.items()}
    return {module: (running[module].returncode, *outputs[module]) for module in ENTRY_POINTS}


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_points_help_is_only_the_help(helps, module):
    """Not only the backbones' own packages: the shared commands (README: ``python -m mung.…``) too."""
    returncode, stdout, stderr = helps[module]
    assert returncode == 0 and "usage:" in stdout
    assert KERNELS_HINT not in stdout + stderr
    assert stderr.strip() == "", stderr[-2000:]


def test_kernels_hint_is_dropped_only_when_kernels_is_not_installed(caplog):
    """The filter drops bitsandbytes' warning for a missing ``kernels`` package, not the same warning for another
    failure, nor other messages of that logger."""
    install_known_message_filters()
    source = logging.getLogger(BNB_LOGGER)
    template = ("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                "`pip install kernels` and the kernels >= 0.11.1")
    with caplog.at_level(logging.WARNING, logger=BNB_LOGGER):
        source.warning(template, ModuleNotFoundError("No module named 'kernels'"))
        source.warning(template, RuntimeError("kernel hub unreachable"))
        source.warning("something else")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "kernel hub unreachable" in messages[0] and messages[1] == "something else"


@pytest.fixture(scope="module")
def data(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    paths = {}
    for backbone in ("llava", "qwen"):
        key = "llava_train_json" if backbone == "llava" else "qwen_train_json"
        paths[backbone] = root / f"{backbone}.json"
        paths[backbone].write_text(json.dumps(json.loads(open(world[key]).read())[:8]))
    return paths


def test_qwen_run_announces_the_new_generator_in_one_line(world, data, tmp_path):
    """A fresh generator on a stock base: before, transformers printed a 12-row MISSING table (with ANSI codes) and
    the trainable-parameter line came twice."""
    argv = tiny_argv("qwen", world, data["qwen"], world["image_folder"], tmp_path / "out", "--max_steps", "2",
                     "--per_device_train_batch_size", "2")
    result = train_as_child("qwen", argv)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # the cross-attention generator: q, k, v, o, mu and log-sigma projections, a weight and a bias each
    assert len(re.findall(r"noise generator: new, initialised with xavier \(12 tensors\)", output)) == 1, output
    for noise in ("MISSING", "LOAD REPORT", "\x1b[", KERNELS_HINT):
        assert noise not in output, noise
    assert output.count("trainable params:") == 1


def test_llava_lora_run_has_no_model_type_or_resize_warnings(world, data, tmp_path):
    """LoRA saves used to re-read the Llama base as a LlavaConfig (a "model of type llama to instantiate a model of
    type llava_noise" warning per save, and peft's save_embedding_layers warning); adding the image patch token
    printed transformers' mean-resizing notice although the new rows are set right after."""
    argv = tiny_argv("llava", world, data["llava"], world["image_folder"], tmp_path / "out", "--max_steps", "2",
                     "--save_steps", "1", "--per_device_train_batch_size", "2", "--tune_mm_mlp_adapter", "False",
                     "--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8")
    result = train_as_child("llava", argv)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (tmp_path / "out" / "checkpoint-1" / "adapter_model.safetensors").is_file()
    for noise in ("to instantiate a model of type", "save_embedding_layers", "multivariate normal", KERNELS_HINT,
                  "is_gradient_checkpointing"):
        assert noise not in output, noise
    assert output.count("trainable params:") == 1


def test_training_load_of_a_new_generator_gives_one_line_instead_of_the_report(world, caplog):
    """``load_model(..., announce_new_generator=True)`` (what training calls): no transformers load report, one line;
    without it (a library call) the report stays, as tests/test_bad_input_builders.py checks."""
    from noise_generator import NoiseGeneratorConfig
    from qwen_noise.model.builder import load_model, noise_config

    hidden = noise_config(world["qwen_model"]).text_config.hidden_size
    config = NoiseGeneratorConfig(hidden_size=hidden, num_heads=4, init="zero", base_model_type="qwen2_5_vl")
    with caplog.at_level(logging.INFO):
        load_model(world["qwen_model"], generator=config, announce_new_generator=True)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "LOAD REPORT" in m or "MISSING" in m], messages
    assert [m for m in messages if m.startswith("noise generator:")] == [
        "noise generator: new, initialised with zero (12 tensors)"]
