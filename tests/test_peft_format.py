"""One format story for MuNG peft adapters: ``checkpoint_kind`` knows them, ``mung.loading.load`` (every app-layer
command) loads them, and ``mung.convert_adapter`` turns a generator-only checkpoint into an adapter and back."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor

from mung.checkpoints import checkpoint_kind
from mung.convert_adapter import main as convert_main
from mung.loading import LoadOptions, load
from noise_generator import NoiseAttachment, attach_pretrained, attachment_of, save_noise_generator
from noise_generator.attach import attach
from noise_generator.config import NoiseGeneratorConfig
from peft_helpers import logits, mung_model, question_batch, stock_model
from vlm_helpers import family_folder


@pytest.fixture
def gemma3(vlm_families):
    return family_folder(vlm_families, "gemma3")


def project_generator(folder: str, out) -> str:
    """A generator-only checkpoint of the project for the family at ``folder`` (attach, then save it)."""
    model = stock_model(folder)
    torch.manual_seed(4)
    generator = attach(model, NoiseGeneratorConfig(hidden_size=model.config.get_text_config().hidden_size,
                                                   num_heads=4, inference_mode="mean"))
    save_noise_generator(generator, out)
    return str(out)


def test_checkpoint_kind_tells_a_mung_adapter_from_a_lora_adapter(gemma3, tmp_path):
    from peft import LoraConfig, get_peft_model

    mung_model(gemma3).save_pretrained(tmp_path / "mung")
    get_peft_model(stock_model(gemma3), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "lora")
    assert checkpoint_kind(tmp_path / "mung") == "mung"
    assert checkpoint_kind(tmp_path / "lora") == "lora"


def test_the_loader_loads_a_mung_adapter_with_its_generator_attached(gemma3, tiny_world, tmp_path):
    model = mung_model(gemma3, lora_r=4, noise_mode="mean")
    batch = question_batch(AutoProcessor.from_pretrained(gemma3), tiny_world)
    expected = logits(model, batch)
    model.save_pretrained(tmp_path)  # the adapter names its base (base_model_name_or_path)
    loaded = load(str(tmp_path), options=LoadOptions(device="cpu"))
    assert type(attachment_of(loaded.model)) is NoiseAttachment and loaded.noise_mode == "mean"
    assert torch.allclose(logits(loaded.model, batch), expected, atol=1e-5)


def test_convert_a_generator_checkpoint_to_an_adapter_and_back(gemma3, tiny_world, tmp_path):
    from peft import PeftModel

    source = project_generator(gemma3, tmp_path / "generator")
    convert_main(["--source", source, "--model-base", gemma3, "--output-dir", str(tmp_path / "adapter")])
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == gemma3 and config["noise_mode"] == "mean"
    batch = question_batch(AutoProcessor.from_pretrained(gemma3), tiny_world)
    attached = stock_model(gemma3)
    attach_pretrained(attached, source)
    adapter = PeftModel.from_pretrained(stock_model(gemma3), str(tmp_path / "adapter")).eval()
    assert torch.equal(logits(adapter, batch), logits(attached, batch))
    convert_main(["--source", str(tmp_path / "adapter"), "--output-dir", str(tmp_path / "again")])
    before = load_file(f"{source}/noise_generator.safetensors")
    after = load_file(str(tmp_path / "again" / "noise_generator.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert (json.loads((tmp_path / "again" / "noise_generator_config.json").read_text())
            == json.loads((tmp_path / "generator" / "noise_generator_config.json").read_text()))


def test_convert_refuses_mung_plus_lora_back_to_generator_only(gemma3, tmp_path):
    mung_model(gemma3, lora_r=2).save_pretrained(tmp_path / "adapter")
    with pytest.raises(ValueError, match="MuNG \\+ LoRA"):
        convert_main(["--source", str(tmp_path / "adapter"), "--output-dir", str(tmp_path / "out")])


def test_convert_needs_the_base_for_a_generator_checkpoint(gemma3, tmp_path):
    source = project_generator(gemma3, tmp_path / "generator")
    with pytest.raises(ValueError, match="--model-base"):
        convert_main(["--source", source, "--output-dir", str(tmp_path / "out")])


def test_noise_maps_of_a_mung_adapter(gemma3, tiny_world, tmp_path):
    from mung import visualize

    mung_model(gemma3).save_pretrained(tmp_path / "adapter")
    image = f"{tiny_world['image_folder']}/{json.loads(open(tiny_world['eval_questions']).readline())['image']}"
    paths = visualize.main(["--model-path", str(tmp_path / "adapter"), "--image-file", image, "--question",
                            "What shape is shown?", "--out", str(tmp_path / "noise.png")])
    assert paths and all(os.path.isfile(path) for path in paths)


def test_convert_command_ends_a_bad_source_with_one_line_and_status_2(tmp_path, capsys):
    from mung.commands import run_command

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_command(convert_main, ["--source", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "neither a MuNG peft adapter" in err[0]
