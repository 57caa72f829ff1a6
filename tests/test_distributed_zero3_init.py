"""The generator's initial weights when ``from_pretrained`` builds the model under DeepSpeed ZeRO-3 (``zero.Init``:
parameters are partitioned as they are created and transformers initialises the missing ones through a gather), and
when ``noise_generator.attach`` puts one into a transformers VLM loaded partitioned (the generic backbone).

The loading runs in a child process (``python tests/test_distributed_zero3_init.py OUT``: a one-rank world, or
``torchrun --nproc_per_node 2 tests/test_distributed_zero3_init.py OUT``), which saves the gathered generator
tensors; the tests check them against the configured ``init`` by hand-computed bounds.
"""

import math
import sys
from pathlib import Path

import pytest
import torch

INITS = ("xavier", "normal", "zero")
# init="normal": not the backbones' initializer_range (0.02), so the generic Linear init would be told apart.
NORMAL_STD = 0.05
BACKBONES = ("llava", "qwen", "vlm")
LOG_SIGMA_MIN = -10.0
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "mu_proj", "log_sigma_proj")


def load_under_zero3(manifest: dict, out: str) -> None:
    """Child process: load both backbones with a fresh generator of each init under ZeRO-3, and a transformers LLaVA
    with one attached, save what was built."""
    import torch.distributed as dist
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import HfDeepSpeedConfig

    from llava_noise.model import LlavaLlamaForCausalLM
    from llava_noise.model.builder import load_llava_config
    from noise_generator import NoiseGeneratorConfig, attach
    from mung.training.distributed import gathered_state_dict, prepare_cpu_deepspeed
    from qwen_noise.model.builder import load_model, noise_config

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}
    prepare_cpu_deepspeed(config)
    config["train_batch_size"] = dist.get_world_size()
    zero3 = HfDeepSpeedConfig(config)  # noqa: F841 (while it lives, from_pretrained builds under zero.Init)
    results = {}
    for init in INITS:
        generator = lambda hidden, kind: NoiseGeneratorConfig(  # noqa: E731
            hidden_size=hidden, num_heads=4, init=init, init_std=NORMAL_STD, log_sigma_min=LOG_SIGMA_MIN,
            base_model_type=kind,
        ).to_dict()
        hidden = noise_config(manifest["qwen_model"]).text_config.hidden_size
        qwen = load_model(manifest["qwen_model"], generator=generator(hidden, "qwen2_5_vl"))
        llava_config = load_llava_config(manifest["llava_llm"])
        llava_config.noise_generator = generator(llava_config.hidden_size, "llava_noise")
        llava = LlavaLlamaForCausalLM.from_pretrained(manifest["llava_llm"], config=llava_config)
        vlm = AutoModelForImageTextToText.from_pretrained(manifest["vlm_llava"])  # HF-format LLaVA, partitioned
        attach(vlm, NoiseGeneratorConfig.from_dict(generator(vlm.config.text_config.hidden_size, "llava")))
        for name, module in (("qwen", qwen.model.noise_generator), ("llava", llava.model.noise_generator),
                             ("vlm", vlm.noise_generator)):
            results[f"{name}-{init}"] = {
                "partitioned": all(hasattr(p, "ds_id") for p in module.parameters()),
                "state": gathered_state_dict(module),
            }
    if dist.get_rank() == 0:
        torch.save(results, out)


@pytest.fixture(scope="module")
def built(tiny_world, vlm_families, tmp_path_factory):
    import json

    from distributed_utils import child_env, free_port, run_group

    root = tmp_path_factory.mktemp("zero3_init")
    (root / "manifest.json").write_text(json.dumps({**tiny_world, "vlm_llava": vlm_families["llava"]}))
    cmd = [sys.executable, str(Path(__file__).resolve()), str(root / "manifest.json"), str(root / "built.pt")]
    run_group(cmd, child_env(MASTER_PORT=str(free_port())), root / "log.txt", timeout=300)
    return torch.load(root / "built.pt", weights_only=True)


def xavier_limit(weight: torch.Tensor) -> float:
    fan_out, fan_in = weight.shape
    return math.sqrt(6.0 / (fan_in + fan_out))


def assert_xavier(state: dict, layer: str) -> None:
    weight, bias = state[f"{layer}.weight"], state[f"{layer}.bias"]
    limit = xavier_limit(weight)
    assert weight.abs().max() <= limit + 1e-7, f"{layer} exceeds the xavier bound"
    assert weight.abs().max() > 0.9 * limit, f"{layer} does not fill the xavier range"
    assert (weight != 0).float().mean() > 0.99, f"{layer} is (partly) zero"
    assert abs(weight.std().item() - limit / math.sqrt(3)) < 0.1 * limit, f"{layer} is not uniform on the xavier range"
    assert torch.count_nonzero(bias) == 0


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_generator_was_built_partitioned(built, backbone):
    assert all(built[f"{backbone}-{init}"]["partitioned"] for init in INITS)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_xavier_init_fills_every_linear_within_the_xavier_bound(built, backbone):
    state = built[f"{backbone}-xavier"]["state"]
    for layer in LINEARS:
        assert_xavier(state, layer)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_normal_init_draws_every_linear_from_n_0_init_std(built, backbone):
    from init_checks import assert_normal

    state = built[f"{backbone}-normal"]["state"]
    for layer in LINEARS:
        assert_normal(state, layer, NORMAL_STD)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_zero_init_zeroes_mu_and_sets_log_sigma_to_its_minimum(built, backbone):
    state = built[f"{backbone}-zero"]["state"]
    for layer in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert_xavier(state, layer)
    assert torch.count_nonzero(state["mu_proj.weight"]) == 0 and torch.count_nonzero(state["mu_proj.bias"]) == 0
    assert torch.count_nonzero(state["log_sigma_proj.weight"]) == 0
    assert torch.all(state["log_sigma_proj.bias"] == LOG_SIGMA_MIN)


if __name__ == "__main__":
    import json

    load_under_zero3(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2])
