"""MuNG as a peft method (``noise_generator.peft_method``): what each peft entry point does for a MuNG adapter, on the
tiny transformers VLM families. References are the stock model of transformers and hand-computed expectations."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor

from noise_generator import NoiseAttachment, attachment_of, find_noise_generator, noise_mode
from noise_generator.peft_method import MuNGConfig
from peft_helpers import (
    CORE_FAMILIES,
    labelled_batch,
    logits,
    mung_model,
    perturb_lora,
    question_batch,
    stock_model,
)
from vlm_helpers import FAMILY_NAMES, family_folder

GENERATOR_KEYS = {"q_proj", "k_proj", "v_proj", "o_proj", "mu_proj", "log_sigma_proj"}


@pytest.fixture(params=FAMILY_NAMES)
def family(request, vlm_families):
    return family_folder(vlm_families, request.param)


@pytest.fixture(params=CORE_FAMILIES)
def core_family(request, vlm_families):
    return family_folder(vlm_families, request.param)


def trainable_names(model) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def test_get_peft_model_trains_the_generator_alone(family):
    model = mung_model(family)
    names = trainable_names(model)
    width = model.get_base_model().config.get_text_config().hidden_size
    assert names and all(".mung.mung_generator.default." in name for name in names)
    assert {name.split(".")[-2] for name in names} == GENERATOR_KEYS
    assert sum(p.numel() for n, p in model.named_parameters() if n in names) == 6 * width * width + 6 * width
    assert model.peft_config["default"].hidden_size == width


def test_mung_plus_lora_is_one_adapter_training_generator_and_decoder_lora(core_family):
    model = mung_model(core_family, lora_r=4)
    names = trainable_names(model)
    decoder = model.get_base_model().get_decoder()
    lora = [n for n in names if ".lora_" in n]
    assert lora and all(".mung." not in n for n in lora)
    # LoRA sits on the decoder's linears only (never the vision side nor the generator)
    decoder_prefix = "base_model.model." + next(n for n, m in model.get_base_model().named_modules() if m is decoder)
    assert all(n.startswith(decoder_prefix + ".layers.") for n in lora)
    assert set(names) - set(lora) == {n for n in names if ".mung.mung_generator.default." in n}
    assert list(model.peft_config) == ["default"]


def test_saved_adapter_has_clean_keys_and_reloads_to_identical_logits(family, tiny_world, tmp_path):
    from peft import PeftModel

    model = mung_model(family)
    processor = AutoProcessor.from_pretrained(family)
    batch = question_batch(processor, tiny_world)
    expected = logits(model, batch)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["hidden_size"] == model.get_base_model().config.get_text_config().hidden_size
    with safe_open(str(tmp_path / "adapter_model.safetensors"), framework="pt") as weights:
        keys = list(weights.keys())
    own = {n.replace(".default.", ".") for n, _ in model.named_parameters() if ".mung_generator." in n}
    assert set(keys) == own and not any(".default." in key for key in keys)
    reloaded = PeftModel.from_pretrained(stock_model(family, seed=5), str(tmp_path)).eval()
    assert torch.equal(logits(reloaded, batch), expected)


def test_mung_plus_lora_round_trips_through_save_and_load(core_family, tiny_world, tmp_path):
    from peft import PeftModel

    model = mung_model(core_family, lora_r=4)
    perturb_lora(model)
    batch = question_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    expected = logits(model, batch)
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(stock_model(core_family), str(tmp_path)).eval()
    assert torch.equal(logits(reloaded, batch), expected)


def test_disable_adapter_and_mode_off_are_the_stock_model_bit_for_bit(core_family, tiny_world):
    stock = stock_model(core_family)
    model = mung_model(core_family, lora_r=4)
    perturb_lora(model)
    batch = question_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    reference = logits(stock, batch, None)
    assert not torch.equal(logits(model, batch, "sample"), reference)  # the adapter does act
    with model.disable_adapter():
        assert torch.equal(logits(model, batch, "sample"), reference)
    generator_only = mung_model(core_family)
    assert torch.equal(logits(generator_only, batch, "off"), reference)
    greedy = dict(max_new_tokens=3, do_sample=False)
    with torch.no_grad(), noise_mode(generator_only, "off"):
        assert torch.equal(generator_only.generate(**batch, **greedy), stock.generate(**batch, **greedy))


def test_unload_gives_back_the_stock_model_with_no_hook(core_family, tiny_world):
    stock = stock_model(core_family)
    model = mung_model(core_family, lora_r=4)
    perturb_lora(model)
    batch = question_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    base = model.unload()
    assert attachment_of(base) is None and find_noise_generator(base) is None
    assert not any(h for m in base.modules() for h in (m._forward_pre_hooks, m._forward_hooks))
    assert set(base.state_dict()) == set(stock.state_dict())
    assert torch.equal(logits(base, batch, None), logits(stock, batch, None))


def test_merge_and_unload_attaches_the_generator_the_project_way(core_family, tiny_world, tmp_path):
    from mung.loading import LoadOptions, load

    model = mung_model(core_family, lora_r=4)
    perturb_lora(model, scale=0.05)
    processor = AutoProcessor.from_pretrained(core_family)
    batch = question_batch(processor, tiny_world)
    expected = logits(model, batch)
    merged = model.merge_and_unload()
    assert type(attachment_of(merged)) is NoiseAttachment and not hasattr(merged, "peft_config")
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, batch), expected, atol=1e-5)
    merged.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = load(str(tmp_path), options=LoadOptions(device="cpu"), noise_mode="mean")
    assert torch.allclose(logits(loaded.model, batch), expected, atol=1e-5)


def test_several_adapters_load_switch_and_delete(core_family, tiny_world, tmp_path):
    model = mung_model(core_family, adapter_name="first", seed=1)
    batch = question_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    first = logits(model, batch)
    other = mung_model(core_family, adapter_name="second", seed=2)
    second = logits(other, batch)
    other.save_pretrained(tmp_path)
    model.load_adapter(str(tmp_path / "second"), adapter_name="second")
    assert not torch.equal(first, second)
    model.set_adapter("second")
    assert torch.equal(logits(model, batch), second)
    assert all(".second." in n for n in trainable_names(model))
    model.set_adapter("first")
    assert torch.equal(logits(model, batch), first)
    model.delete_adapter("second")
    assert list(model.peft_config) == ["first"]
    assert not any(".second." in n for n, _ in model.named_parameters())
    assert torch.equal(logits(model, batch), first)


def test_num_samples_m_averages_m_draws_in_training(core_family, tiny_world):
    model = mung_model(core_family, num_samples=3)
    batch = labelled_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    model.train()
    torch.manual_seed(11)
    loss = model(**batch).loss
    inner = model.get_base_model()
    torch.manual_seed(11)
    draws = [inner(**batch).loss for _ in range(3)]  # the model without the tuner: one draw per call
    assert len({round(float(d), 6) for d in draws}) == 3
    assert torch.allclose(loss, torch.stack(draws).mean())


def test_gradient_checkpointing_gives_the_same_generator_gradients(core_family, tiny_world):
    batch = labelled_batch(AutoProcessor.from_pretrained(core_family), tiny_world)
    grads = []
    for checkpointing in (False, True):
        model = mung_model(core_family)
        model.train()
        torch.manual_seed(3)  # the same noise draw in both runs
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and all(g.abs().sum() > 0 for g in grads[0].values())
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


@pytest.mark.parametrize("autocast", [True, False])
def test_bf16_model_with_generator_in_fp32_or_bf16(vlm_families, tiny_world, autocast):
    from peft import get_peft_model

    folder = family_folder(vlm_families, "gemma3")
    model = stock_model(folder).to(torch.bfloat16)
    model = get_peft_model(model, MuNGConfig(num_heads=4, lora_r=4), autocast_adapter_dtype=autocast)
    wanted = torch.float32 if autocast else torch.bfloat16
    adapter = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert adapter and set(adapter.values()) == {wanted}
    batch = labelled_batch(AutoProcessor.from_pretrained(folder), tiny_world)
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_a_config_of_another_width_fails_at_get_peft_model(vlm_families):
    from peft import get_peft_model

    folder = family_folder(vlm_families, "gemma3")
    with pytest.raises(ValueError, match="hidden size 12.*model's hidden size"):
        get_peft_model(stock_model(folder), MuNGConfig(hidden_size=12, num_heads=4))


def test_a_model_without_image_placeholder_fails_at_get_peft_model():
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=4, vocab_size=32))
    with pytest.raises(ValueError, match="no image_token_id"):
        get_peft_model(text_only, MuNGConfig(num_heads=4))


def test_a_bad_generator_setting_is_named_by_its_mung_config_field():
    with pytest.raises(ValueError, match=r"MuNGConfig\.noise_mode='loud'"):
        MuNGConfig(noise_mode="loud")


def test_loading_without_the_registering_import_says_what_to_import(vlm_families, tmp_path):
    mung_model(family_folder(vlm_families, "gemma3")).save_pretrained(tmp_path)
    script = ("from peft import PeftConfig, PeftModel; import sys; "
              "PeftModel.from_pretrained(None, sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "import noise_generator.peft_method" in result.stderr.splitlines()[-1]


def test_import_noise_generator_registers_with_a_loaded_peft_and_stays_light_without():
    script = ("import sys, noise_generator; light = 'peft' not in sys.modules; import peft, importlib; "
              "importlib.reload(noise_generator); from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING as configs; "
              "from peft import PeftType; print(light, configs[PeftType.MUNG].__name__)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "MuNGConfig"]


def test_peft_imported_after_noise_generator_loads_a_mung_adapter(vlm_families, tmp_path):
    """``import noise_generator`` stays light; the peft imported after it knows MuNG (no reload, no second import)."""
    folder = family_folder(vlm_families, "gemma3")
    mung_model(folder).save_pretrained(tmp_path)
    script = ("import sys, noise_generator; light = 'peft' not in sys.modules and 'transformers' not in sys.modules; "
              "from transformers import AutoModelForImageTextToText; from peft import PeftModel; "
              "model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(sys.argv[1]), sys.argv[2]); "
              "print(light, type(model.base_model).__name__)")
    result = subprocess.run([sys.executable, "-c", script, folder, str(tmp_path)], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["True", "MuNGModel"]


def test_what_trl_writes_into_the_config_trains_and_round_trips(vlm_families, tiny_world, tmp_path):
    # TRL sets modules_to_save (lm_head) and trainable_token_indices (new chat-template tokens) when it clones a
    # chat template; peft's own machinery handles them in a MuNG adapter as in a LoRA one. (The token rows of
    # trainable_token_indices do not round-trip on Gemma 3's tied embeddings with LoRA either: a peft matter, so only
    # their training is checked here.)
    from peft import PeftModel

    folder = family_folder(vlm_families, "gemma3")
    assert any("token_adapter" in n for n in trainable_names(mung_model(folder, trainable_token_indices=[3, 4])))
    model = mung_model(folder, modules_to_save=["lm_head"])
    assert any("lm_head" in n for n in trainable_names(model))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lm_head" in name and param.requires_grad:
                param.add_(0.5)
    batch = question_batch(AutoProcessor.from_pretrained(folder), tiny_world)
    expected = logits(model, batch)
    assert not torch.equal(expected, logits(mung_model(folder), batch))
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(stock_model(folder), str(tmp_path)).eval()
    assert torch.equal(logits(reloaded, batch), expected)
