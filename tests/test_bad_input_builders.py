"""Loading checkpoints that do not fit, both builders: clear refusals (sizes / model types named, missing base,
missing folders, fast and without a hub lookup), and transformers' MISSING report held back only for the weights the
builder restores right after loading."""

import json
import logging
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from llava_builders import tiny_llava_config
from llava_noise.model import LlavaLlamaForCausalLM
from llava_noise.model.builder import load_pretrained_model as load_llava
from llava_noise.model.checkpoint_io import save_non_lora_trainables, save_projector
from noise_generator import NoiseGenerator, NoiseGeneratorConfig, save_noise_generator
from qwen_noise.model.builder import load_pretrained_model as load_qwen

LLAVA_HIDDEN, QWEN_HIDDEN = 128, 64


def generator_dir(folder, hidden_size, base_model_type):
    config = NoiseGeneratorConfig(hidden_size=hidden_size, num_heads=4, base_model_type=base_model_type)
    save_noise_generator(NoiseGenerator(config), folder)
    return str(folder)


@pytest.fixture(scope="module")
def llava_checkpoints(tiny_world, tmp_path_factory):
    """Generator-only, projector-only and LoRA folders over the tiny world's Llama (built once)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("llava_ckpts")
    config = tiny_llava_config(tiny_world, generator={"base_model_type": "llava_noise"})
    assert config.hidden_size == LLAVA_HIDDEN
    model = LlavaLlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], config=config)
    save_noise_generator(model.get_model().noise_generator, root / "generator")
    (root / "projector").mkdir()
    save_projector(model, root / "projector")
    save_noise_generator(model.get_model().noise_generator, root / "projector")  # as the trainer writes it
    model.config.save_pretrained(root / "projector")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=r"model\.layers\.\d+\.self_attn\.q_proj"))
    for name, param in peft_model.named_parameters():
        param.requires_grad_("lora_" in name or "mm_projector" in name or "noise_generator" in name)
    (root / "lora").mkdir()
    save_non_lora_trainables(peft_model, root / "lora")
    peft_model.save_pretrained(root / "lora")
    model.config.save_pretrained(root / "lora")
    return {name: str(root / name) for name in ("generator", "projector", "lora")}


@pytest.fixture(scope="module")
def base_missing_a_weight(tiny_world, tmp_path_factory):
    """The tiny Llama with one decoder weight removed from its safetensors file."""
    folder = tmp_path_factory.mktemp("broken_base") / "llama"
    shutil.copytree(tiny_world["llava_llm"], folder)
    tensors = load_file(folder / "model.safetensors")
    tensors.pop("model.layers.0.mlp.up_proj.weight")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return str(folder)


class ReportCatcher(logging.Handler):
    """Records transformers' load reports (transformers' loggers do not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reports = []

    def emit(self, record):
        if "LOAD REPORT" in record.getMessage():
            self.reports.append(record.getMessage())


@pytest.fixture
def load_reports():
    catcher = ReportCatcher()
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(catcher)
    yield catcher.reports
    logger.removeHandler(catcher)


# --- generator of another width / backbone --------------------------------------------------------------------
def test_llava_refuses_generator_of_another_hidden_size(tiny_world, tmp_path):
    folder = generator_dir(tmp_path / "g", QWEN_HIDDEN, "qwen2_5_vl")
    with pytest.raises(ValueError, match=rf"hidden size {QWEN_HIDDEN}, but the model's hidden size is {LLAVA_HIDDEN}"):
        load_llava(folder, tiny_world["llava_llm"], "g", device="cpu")


def test_llava_refuses_generator_of_the_other_backbone(tiny_world, tmp_path):
    folder = generator_dir(tmp_path / "g", LLAVA_HIDDEN, "qwen2_5_vl")
    with pytest.raises(ValueError, match=r"trained on a 'qwen2_5_vl' model and cannot be used with a 'llava_noise' model"):
        load_llava(folder, tiny_world["llava_llm"], "g", device="cpu")


def test_qwen_refuses_generator_of_another_hidden_size(tiny_world, tmp_path):
    folder = generator_dir(tmp_path / "g", LLAVA_HIDDEN, "llava_noise")
    with pytest.raises(ValueError, match=rf"hidden size {LLAVA_HIDDEN}, but the model's hidden size is {QWEN_HIDDEN}"):
        load_qwen(folder, tiny_world["qwen_model"], device="cpu")


def test_qwen_refuses_generator_of_the_other_backbone(tiny_world, tmp_path):
    folder = generator_dir(tmp_path / "g", QWEN_HIDDEN, "llava_noise")
    with pytest.raises(ValueError, match=r"trained on a 'llava_noise' model and cannot be used with a 'qwen2_5_vl' model"):
        load_qwen(folder, tiny_world["qwen_model"], device="cpu")


# --- LoRA without its base ---------------------------------------------------------------------------------------
def test_llava_lora_without_model_base_asks_for_it(llava_checkpoints, tmp_path):
    folder = tmp_path / "lora"
    shutil.copytree(llava_checkpoints["lora"], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config.pop("base_model_name_or_path")
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"is a LoRA checkpoint without the base weights; pass .* as --model-base"):
        load_llava(str(folder), None, "lora", device="cpu")


def test_llava_lora_loads_over_the_base_its_adapter_names(llava_checkpoints, tiny_world):
    adapter = json.loads(open(f"{llava_checkpoints['lora']}/adapter_config.json").read())
    assert adapter["base_model_name_or_path"] == tiny_world["llava_llm"]
    _, model, _, _ = load_llava(llava_checkpoints["lora"], None, "lora", device="cpu")
    assert model.get_model().noise_generator is not None


def test_llava_lora_with_missing_model_base_names_it(llava_checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--model-base \(.*gone\) does not exist"):
        load_llava(llava_checkpoints["lora"], str(tmp_path / "gone"), "lora", device="cpu")


def test_qwen_adapter_whose_base_is_gone_asks_for_model_base(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/old/box/qwen"}))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"LoRA checkpoint; the base named in .*adapter_config.json \(/old/box/qwen\) "
                                                r"does not exist or is not a folder\. Pass .* as --model-base"):
        load_qwen(tmp_path / "adapter", device="cpu")
    assert time.perf_counter() - start < 2


def test_qwen_adapter_without_any_base_asks_for_model_base(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"LoRA checkpoint without the base weights; pass .* as --model-base"):
        load_qwen(tmp_path / "adapter", device="cpu")


# --- non-existent --model-path: clear and fast (no hub lookup) -----------------------------------------------------
@pytest.mark.parametrize("loader", ["llava", "qwen"])
def test_missing_model_path_fails_fast_without_hub_lookup(loader, tmp_path, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", no_hub)
    missing = str(tmp_path / "no-such-model")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"--model-path .*no-such-model does not exist .*only local checkpoints"):
        load_llava(missing, None, "x", device="cpu") if loader == "llava" else load_qwen(missing, device="cpu")
    assert time.perf_counter() - start < 1


# --- the MISSING report: held back for restored weights, kept for truly missing ones -------------------------------
@pytest.mark.parametrize("kind", ["generator", "projector", "lora"])
def test_llava_restored_weights_are_not_reported_missing(tiny_world, llava_checkpoints, load_reports, kind):
    _, model, _, _ = load_llava(llava_checkpoints[kind], tiny_world["llava_llm"], kind, device="cpu")
    assert model.get_model().noise_generator is not None
    assert load_reports == []


def test_llava_truly_missing_base_weight_still_raises_and_is_reported(llava_checkpoints, base_missing_a_weight,
                                                                      load_reports):
    with pytest.raises(ValueError, match=r"weights missing from the checkpoint and not restored by its files: \['model.layers.0.mlp.up_proj.weight'\]"):
        load_llava(llava_checkpoints["generator"], base_missing_a_weight, "g", device="cpu")
    assert len(load_reports) == 1 and "up_proj" in load_reports[0]


def test_qwen_generator_only_checkpoint_is_not_reported_missing(tiny_world, tmp_path, load_reports):
    folder = generator_dir(tmp_path / "g", QWEN_HIDDEN, "qwen2_5_vl")
    _, model = load_qwen(folder, tiny_world["qwen_model"], device="cpu")
    torch.testing.assert_close(model.model.noise_generator.q_proj.weight, load_file(f"{folder}/noise_generator.safetensors")["q_proj.weight"])
    assert load_reports == []


def test_qwen_fresh_generator_is_still_reported(tiny_world, load_reports):
    from qwen_noise.model.builder import load_model

    config = NoiseGeneratorConfig(hidden_size=QWEN_HIDDEN, num_heads=4, base_model_type="qwen2_5_vl")
    load_model(tiny_world["qwen_model"], generator=config)  # newly initialised: the report is true
    assert len(load_reports) == 1 and "noise_generator" in load_reports[0]
