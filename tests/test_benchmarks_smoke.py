"""Smoke tests of benchmarks 2 and 3 on the tiny world: every contender is measured and every number is usable.

No timing assertions: the numbers depend on the machine and its load.
"""

import math
import re
from pathlib import Path

import pytest
import torch

from benchmarks import inference_latency, training_step


def world_dir(manifest: dict) -> str:
    return str(Path(manifest["image_folder"]).parent)


def table_rows(markdown: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every body row of the first markdown table in ``markdown``."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def numbers(cells: list[str]) -> list[float]:
    """Every number in the cells (an IQR 'a–b' gives two; thousands separators are dropped)."""
    return [float(x) for cell in cells for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", cell.replace(",", ""))]


@pytest.fixture(scope="module", params=["llava", "qwen"])
def training_rows(request, tiny_world):
    threads = torch.get_num_threads()  # one thread: a shared busy machine makes OpenMP barriers crawl
    try:
        rows = training_step.measure(request.param, "tiny", world_dir(tiny_world), batch_size=2, steps=2, warmup=1,
                                     memory_steps=1, threads=1)
    finally:
        torch.set_num_threads(threads)
    return request.param, rows


@pytest.fixture(scope="module", params=["llava", "qwen"])
def inference_measured(request, tiny_world):
    threads = torch.get_num_threads()
    try:
        measured = inference_latency.measure(request.param, "tiny", world_dir(tiny_world), new_tokens=2, repeats=1,
                                             warmup=0, prompts=1, threads=1)
    finally:
        torch.set_num_threads(threads)
    return request.param, measured


def test_training_step_table_has_every_contender_with_finite_positive_numbers(training_rows):
    _, rows = training_rows
    body = table_rows(training_step.render(rows))
    assert list(body) == list(training_step.CONTENDERS)
    for name, cells in body.items():
        values = numbers(cells)
        assert len(values) == 10, (name, cells)  # median, IQR low+high, ratio, CPU, ratio, MiB, ratio, params, share
        assert all(math.isfinite(v) and v > 0 for v in values), (name, cells)


def test_training_step_mung_trains_the_generator_alone(training_rows):
    backbone, rows = training_rows
    width = {"llava": 128, "qwen": 64}[backbone]  # tiny preset LLM widths (tiny_world/presets.py)
    generator_params = 6 * (width * width + width)  # q, k, v, o, mu, log_sigma: d x d weights + biases
    assert {row["contender"]: row["trainable"] for row in rows}["MuNG"] == generator_params


def test_inference_table_has_every_contender_with_finite_positive_numbers(inference_measured):
    _, measured = inference_measured
    body = table_rows(inference_latency.render(measured))
    assert list(body) == list(inference_latency.CONTENDERS)
    for name, cells in body.items():
        values = numbers(cells)
        assert len(values) == 8, (name, cells)  # TTFT, IQR low/high, ratio, CPU, ratio, TPOT, ratio
        assert all(math.isfinite(v) and v > 0 for v in values), (name, cells)


def test_vlm_ttft_counts_real_shapes_and_times_a_tiny_family(tiny_world):
    from benchmarks import vlm_ttft

    _, text_config, image_tokens, _ = vlm_ttft.REAL["llava"]
    tflop, ratio = vlm_ttft.real_shape_ratio(text_config, image_tokens)
    # A 7B Llama prefill of 704 tokens is about 2 x 6.7e9 parameters x 704 tokens = 9.4 TFLOP (weights dominate).
    assert 8.5 < tflop < 10.5 and 1.0 < ratio < 1.03
    off, noised = vlm_ttft.measured_ttft(tiny_world, "gemma3", "tiny", repeats=1)
    assert off > 0 and noised > 0 and math.isfinite(noised / off)
