"""Two-process training on CPU (gloo) for both backbones: DDP and DeepSpeed ZeRO-2 / ZeRO-3 / ZeRO-3 with optimizer
offload, under ``torchrun`` and the ``deepspeed`` launcher, generator-only and generator + LoRA.

Every run logs, per rank and step, the rank's own loss and a float64 digest of its full trainable parameters
(``mung.training.rank_log.RankLogCallback``, passed by ``tests/rank_log_train.py``), and the gathered trainable
tensors at the end. Each test checks one run: the replicas stay identical at every step while the ranks see different batches
and the Trainer's logged loss is their mean; the saved generator / adapter / non-LoRA tensors are complete and
equal the gathered copy; the output folder loads in this process and generates.

The suite runs a representative subset (``IN_SUITE``); ``MUNG_DISTRIBUTED_MATRIX=all`` runs every combination.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_utils import REPO, child_env, free_port, logged_losses, rank_log_command, rank_logs, run_group
from llava_builders import tiny_llava_config
from noise_generator import WEIGHTS_NAME

WORLD = 2
STEPS = 3
TIMEOUT = 420
# (backbone, launcher, deepspeed config, tune): the suite's subset; the rest runs with MUNG_DISTRIBUTED_MATRIX=all.
IN_SUITE = [
    ("llava", "torchrun", None, "gen_lora"),
    ("llava", "torchrun", "zero3", "gen_lora"),
    ("qwen", "deepspeed", "zero3_offload", "gen"),
]
EVERY = [
    (backbone, "torchrun", zero, tune)
    for backbone in ("llava", "qwen")
    for zero in (None, "zero2", "zero3", "zero3_offload")
    for tune in ("gen", "gen_lora")
] + [(backbone, "deepspeed", zero, "gen_lora") for backbone in ("llava", "qwen") for zero in ("zero2", "zero3")]
CASES = EVERY if os.environ.get("MUNG_DISTRIBUTED_MATRIX") == "all" else IN_SUITE


def case_id(case) -> str:
    backbone, launcher, zero, tune = case
    return f"{backbone}-{launcher}-{zero or 'ddp'}-{tune}"


def deepspeed_config(name: str, directory: Path) -> str:
    """The project's config; for offload without its DeepSpeed optimizer: the Trainer's torch AdamW keeps the
    generator's own lr group and DeepSpeed builds no cpu_adam op (a C++ build on first use)."""
    config = json.loads((REPO / "scripts" / f"{name}.json").read_text())
    if name == "zero3_offload":
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        config["zero_force_ds_cpu_optimizer"] = False
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def llava_base(tiny_world, tmp_path_factory):
    """A full tiny LLaVA-1.5 (Llama, CLIP tower name, random mlp2x_gelu projector): base of generator-only runs."""
    from transformers import AutoTokenizer

    from llava_noise.model import LlavaLlamaForCausalLM

    out = tmp_path_factory.mktemp("llava_base")
    config = tiny_llava_config(tiny_world, mm_vision_select_layer=-2, image_aspect_ratio="pad")
    torch.manual_seed(0)
    LlavaLlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], config=config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_world["llava_llm"]).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def data(tiny_world, tmp_path_factory):
    """12 LLaVA samples; 12 Qwen samples in the order image, image, text, text, ... so that with sequential sampling
    rank 0 gets image batches and rank 1 text-only ones (ZeRO-3 must not hang on that)."""
    root = tmp_path_factory.mktemp("dist_data")
    llava = json.loads(Path(tiny_world["llava_train_json"]).read_text())[: WORLD * 2 * STEPS]
    (root / "llava.json").write_text(json.dumps(llava))
    records = json.loads(Path(tiny_world["qwen_train_json"]).read_text())
    images = [r for r in records if isinstance(r.get("image"), str)]
    texts = [r for r in records if not r.get("image")]
    qwen = [r for k in range(STEPS) for r in images[2 * k : 2 * k + 2] + texts[2 * k : 2 * k + 2]]
    (root / "qwen.json").write_text(json.dumps(qwen))
    return {"llava": str(root / "llava.json"), "qwen": str(root / "qwen.json")}


def training_args(case, tiny_world, data, llava_base, out: Path) -> list[str]:
    backbone, _, zero, tune = case
    common = [
        "--output_dir", str(out), "--per_device_train_batch_size", "2", "--max_steps", str(STEPS),
        "--save_steps", "2", "--logging_steps", "1", "--report_to", "none", "--use_cpu", "True",
        "--ddp_backend", "gloo", "--disable_tqdm", "True", "--dataloader_num_workers", "0", "--seed", "0",
        "--train_sampling_strategy", "sequential", "--model_max_length", "256", "--ng_heads", "4",
    ]
    if zero:
        common += ["--deepspeed", deepspeed_config(zero, out.parent)]
    if backbone == "qwen":
        return common + [
            "--model_name_or_path", tiny_world["qwen_model"], "--data_path", data["qwen"],
            "--image_folder", tiny_world["image_folder"], "--tune", "noise" if tune == "gen" else "noise_lora",
            "--learning_rate", "1e-2", "--lora_r", "4", "--lora_alpha", "8",
        ]
    args = common + [
        "--vision_tower", tiny_world["llava_vision_tower"], "--version", "v1", "--data_path", data["llava"],
        "--image_folder", tiny_world["image_folder"], "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False", "--mm_use_im_patch_token", "False",
        "--image_aspect_ratio", "pad", "--noise_generator", "True", "--learning_rate", "1e-3",
    ]
    if tune == "gen":
        return args + ["--model_name_or_path", llava_base, "--freeze_backbone", "True",
                       "--freeze_mm_mlp_adapter", "True"]
    return args + ["--model_name_or_path", tiny_world["llava_llm"], "--lora_enable", "True", "--lora_r", "4",
                   "--lora_alpha", "8"]


def launch(case, args: list[str], out: Path) -> None:
    backbone, launcher, _, _ = case
    script = rank_log_command(backbone, out / "rank_log", args)
    port = str(free_port())
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
               "--master_addr", "127.0.0.1", "--master_port", port, *script]
    else:
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(WORLD), "--master_port", port,
               *script]
    run_group(cmd, child_env(), out.parent / "train.log", TIMEOUT)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def run(request, tiny_world, data, llava_base, tmp_path_factory):
    case = request.param
    out = tmp_path_factory.mktemp(case_id(case)) / "out"
    launch(case, training_args(case, tiny_world, data, llava_base, out), out)
    return case, out


def gathered(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "rank_log" / "trainables.pt", weights_only=True)


@pytest.mark.slow
def test_replicas_stay_identical_and_logged_loss_is_the_mean_of_the_ranks(run):
    case, out = run
    logs = rank_logs(out / "rank_log", WORLD)
    logged = logged_losses(out)
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(range(1, STEPS + 1))
    for step in range(STEPS):
        records = [logs[rank][step] for rank in range(WORLD)]
        assert records[0]["digest"] == records[1]["digest"], f"{case_id(case)}: ranks diverged at step {step + 1}"
        mean = sum(r["loss"] for r in records) / WORLD
        assert mean == pytest.approx(logged[step + 1], abs=1e-5)
    assert records[0]["loss"] != records[1]["loss"], "both ranks trained on the same batch"
    assert logs[0][0]["digest"] != logs[0][-1]["digest"], "the trainable parameters never changed"


@pytest.mark.slow
def test_saved_tensors_are_complete_and_equal_the_gathered_copy(run):
    case, out = run
    _, _, _, tune = case
    reference = gathered(out)
    generator = {name.split("noise_generator.", 1)[1]: t for name, t in reference.items() if "noise_generator." in name}
    assert generator
    for folder in (out, out / "checkpoint-2"):
        saved = load_file(folder / WEIGHTS_NAME)
        assert all(t.numel() > 0 for t in saved.values())
    saved = load_file(out / WEIGHTS_NAME)
    assert saved.keys() == generator.keys()
    assert all(torch.equal(saved[k], generator[k]) for k in saved)
    if tune == "gen_lora":
        adapter = load_file(out / "adapter_model.safetensors")
        lora = {name.replace(".default.", "."): t for name, t in reference.items() if "lora_" in name}
        assert adapter.keys() == lora.keys()
        assert all(t.numel() > 0 and torch.equal(t, lora[k]) for k, t in adapter.items())
    if case[0] == "llava" and tune == "gen_lora":
        non_lora = torch.load(out / "non_lora_trainables.bin", weights_only=True)
        expected = {name: t for name, t in reference.items() if "lora_" not in name}
        assert non_lora.keys() == expected.keys()
        assert any("mm_projector" in k for k in non_lora)
        assert all(t.numel() > 0 and torch.equal(t, expected[k]) for k, t in non_lora.items())


@pytest.mark.slow
def test_output_loads_in_one_process_and_answers(run, tiny_world, llava_base):
    case, out = run
    backbone, _, _, tune = case
    saved = load_file(out / WEIGHTS_NAME)
    if backbone == "llava":
        from llava_noise.constants import IMAGE_TOKEN_INDEX
        from llava_noise.model.builder import load_pretrained_model

        base = llava_base if tune == "gen" else tiny_world["llava_llm"]
        tokenizer, model, processor, _ = load_pretrained_model(str(out), base, "run", device="cpu")
        generator = model.get_model().noise_generator
        from PIL import Image

        image = Image.open(Path(tiny_world["image_folder"]) / "train" / "00000.png").convert("RGB")
        pixels = processor(images=image, return_tensors="pt")["pixel_values"]
        prompt = tokenizer("What colour is the shape?", add_special_tokens=False).input_ids
        ids = torch.tensor([[tokenizer.bos_token_id, IMAGE_TOKEN_INDEX, *prompt]])
        with torch.no_grad():
            output = model.generate(ids, images=pixels, max_new_tokens=3, do_sample=False, noise_mode="mean")
        new_tokens = output.shape[1]
    else:
        from qwen_noise.data import build_inference_inputs
        from qwen_noise.model.builder import load_pretrained_model

        processor, model = load_pretrained_model(out, tiny_world["qwen_model"], device="cpu")
        generator = model.model.noise_generator
        turns = [("user", "<image>\nWhat colour is the shape?")]
        inputs = build_inference_inputs(processor, turns, ["train/00000.png"], image_folder=tiny_world["image_folder"])
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=3, do_sample=False, noise_mode="mean")
        new_tokens = output.shape[1] - inputs["input_ids"].shape[1]
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in saved.items())
    assert new_tokens >= 1


def test_qwen_text_only_training_batch_runs_the_vision_tower_with_zero_weight(tiny_world, data):
    """A rank with a text-only batch must run the same modules as one with images (ZeRO-3 gathers per module): the
    vision blocks and merger run, the merger is in the autograd graph (a zero gradient), and the loss is the stock
    model's."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from noise_generator import NoiseGeneratorConfig
    from qwen_noise.data import QwenDataCollator, QwenSupervisedDataset
    from qwen_noise.model.builder import load_model

    processor = AutoProcessor.from_pretrained(tiny_world["qwen_model"])
    dataset = QwenSupervisedDataset(data["qwen"], processor, image_folder=tiny_world["image_folder"],
                                    model_max_length=256)
    batch = QwenDataCollator(processor.tokenizer.pad_token_id)([dataset[2], dataset[3]])
    assert "pixel_values" not in batch
    model = load_model(tiny_world["qwen_model"], generator=NoiseGeneratorConfig(hidden_size=64, num_heads=4).to_dict())
    model.train()
    model.model.visual.merger.requires_grad_(True)
    ran = []
    for name in ("blocks", "merger"):
        module = getattr(model.model.visual, name)
        (module[0] if name == "blocks" else module).register_forward_hook(lambda *_, name=name: ran.append(name))
    loss = model(**batch).loss
    loss.backward()
    assert ran == ["blocks", "merger"]
    grads = [p.grad for p in model.model.visual.merger.parameters()]
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
    stock = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_world["qwen_model"]).train()
    assert loss.item() == pytest.approx(stock(**batch).loss.item(), abs=1e-6)
