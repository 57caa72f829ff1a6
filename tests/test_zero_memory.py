"""benchmarks.zero_memory: its trained-parameter counts are what MuNG and LoRA r32 really add to a model (counted on
the tiny version of each real config, built and tuned by the GPU check's own code), and its per-GPU bytes follow the
bf16 mixed-precision bill by hand."""

import pytest
import torch

from benchmarks import gpu_check, zero_memory
from benchmarks.real_configs import REAL, build_config


def tiny_settings():
    return gpu_check.Settings(torch.device("cpu"), torch.float32, "sdpa", True, steps=1, warmup=0, repeats=1)


@pytest.mark.parametrize("name", list(REAL))
def test_lora_and_generator_counts_equal_what_the_check_trains(name):
    config = build_config(name, smoke=True)
    d = config.get_text_config().hidden_size
    lora = gpu_check.tuned(gpu_check.new_model(name, tiny_settings()), "lora")
    lora_params = sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
    assert zero_memory.lora_count(config.get_text_config()) == lora_params
    mung = gpu_check.tuned(gpu_check.new_model(name, tiny_settings()), "noise")
    assert 6 * (d * d + d) == sum(p.numel() for p in mung.parameters() if p.requires_grad)


def test_bytes_per_gpu_by_hand():
    # 1,000 params of which 100 train, 4 GPUs: weights 2 B each, trained ones 2 + 12 B more, split as ZeRO says.
    assert zero_memory.per_gpu_bytes(1000, 100, 4, stage=2) == 2000 + 1400 / 4
    assert zero_memory.per_gpu_bytes(1000, 100, 4, stage=3) == 2000 / 4 + 1400 / 4
    assert zero_memory.offload_cpu_bytes_per_node(1000, 100, 16) == (2000 + 1400) / 2
