"""The generator's initial weights: ``init="normal"`` (the authors' effective init: N(0, init_std) weights, zero
biases) and ``init="xavier"``, on the module itself and through both backbones' ``from_pretrained`` on a base
without a generator (the generator's tensors are missing and initialised by the model's ``_init_weights``)."""

import pytest
import torch

from init_checks import LINEARS, assert_normal, assert_xavier
from llava_builders import tiny_llava_config
from llava_noise.model import LlavaLlamaForCausalLM
from noise_generator import NoiseGenerator, NoiseGeneratorConfig
from qwen_noise.model.builder import load_model

# Not the backbones' initializer_range (0.02), so a generator left with the backbone's generic Linear init fails.
STD = 0.05


def llava_generator_state(tiny_world, **generator) -> dict:
    config = tiny_llava_config(tiny_world, generator=generator)
    model, info = LlavaLlamaForCausalLM.from_pretrained(
        tiny_world["llava_llm"], config=config, output_loading_info=True
    )
    model_generator_keys = {f"model.noise_generator.{k}" for k in model.model.noise_generator.state_dict()}
    assert model_generator_keys <= set(info["missing_keys"])  # (the plain Llama base has no projector either)
    return model.model.noise_generator.state_dict()


def qwen_generator_state(tiny_world, **generator) -> dict:
    config = NoiseGeneratorConfig(hidden_size=64, num_heads=4, base_model_type="qwen2_5_vl", **generator)
    return load_model(tiny_world["qwen_model"], generator=config).model.noise_generator.state_dict()


BACKBONES = {"llava": llava_generator_state, "qwen": qwen_generator_state}


def test_normal_init_is_the_default_std_of_the_authors_run():
    config = NoiseGeneratorConfig(hidden_size=64, num_heads=4, init="normal")
    assert config.init_std == 0.02  # Qwen2.5-VL's initializer_range
    torch.manual_seed(0)
    state = NoiseGenerator(config).state_dict()
    for layer in LINEARS:
        assert_normal(state, layer, 0.02)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_normal_init_through_from_pretrained_on_a_base_without_generator(tiny_world, backbone):
    torch.manual_seed(0)
    state = BACKBONES[backbone](tiny_world, init="normal", init_std=STD)
    for layer in LINEARS:
        assert_normal(state, layer, STD)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_xavier_init_through_from_pretrained_on_a_base_without_generator(tiny_world, backbone):
    torch.manual_seed(0)
    state = BACKBONES[backbone](tiny_world, init="xavier")
    for layer in LINEARS:
        assert_xavier(state, layer)


def test_init_std_must_be_positive():
    with pytest.raises(ValueError, match="init_std"):
        NoiseGeneratorConfig(hidden_size=64, num_heads=4, init="normal", init_std=0.0)
