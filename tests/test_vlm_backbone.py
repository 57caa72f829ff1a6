"""The generic backbone through the shared app layer: which checkpoints it serves (and why not), loading MuNG folders
and generator-only checkpoints with mung.loading, and the shared eval, chat and noise-map commands on tiny families."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoProcessor

from mung import backbones
from mung.eval import model_vqa_loader
from mung.loading import LoadOptions, load
from mung.serve import cli
from mung.visualize import noise_maps
from noise_generator import find_noise_generator, save_noise_generator
from vlm_helpers import FAMILY_NAMES, chat_batch, family_folder, load_family, world_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERIC = [name for name in FAMILY_NAMES if name != "qwen2_5_vl"]  # the Qwen backbone serves Qwen2.5-VL
NEEDS_AN_IMAGE = {"paligemma"}  # its processor takes no prompt without an image


@pytest.fixture(scope="module")
def mung_checkpoints(vlm_families, tmp_path_factory):
    """{family: a save_pretrained folder of the family's tiny model with a generator attached (mean mode)}, lazily."""
    made = {}

    def make(name):
        if name not in made:
            model, processor = load_family(family_folder(vlm_families, name),
                                           generator={"inference_mode": "mean", "init": "normal", "init_std": 0.1})
            folder = tmp_path_factory.mktemp("mung") / name
            model.save_pretrained(folder)
            processor.save_pretrained(folder)
            made[name] = (str(folder), model)
        return made[name]

    return make


# --- which backbone serves what ---------------------------------------------------------------------------------


def test_each_family_goes_to_the_right_backbone(vlm_families):
    for name in GENERIC:
        if name in vlm_families:
            config = json.load(open(os.path.join(vlm_families[name], "config.json")))
            assert backbones.for_config(config, name).name == "vlm", name
    qwen = json.load(open(os.path.join(vlm_families["qwen2_5_vl"], "config.json")))
    assert backbones.for_config(qwen, "qwen").name == "qwen"
    assert backbones.for_config({"model_type": "llava", "mm_vision_tower": "x"}, "original").name == "llava"


@pytest.mark.parametrize("config, reason", [
    ({"model_type": "gpt2"}, "not an image-text-to-text model"),
    ({"model_type": "mllama"}, "cross-attention"),
    ({"model_type": "pix2struct"}, "no image placeholder token"),
])
def test_unsupported_models_are_refused_with_the_reason(config, reason):
    with pytest.raises(ValueError, match=reason):
        backbones.for_config(config, "checkpoint/config.json")


# --- loading ----------------------------------------------------------------------------------------------------


def logits_of(loaded, processor, tiny_world):
    batch = chat_batch(processor, world_images(tiny_world), ["What color is it?", "Is there a red circle?"])
    with torch.no_grad():
        return loaded(**batch).logits


@pytest.mark.parametrize("name", GENERIC)
def test_a_saved_mung_folder_loads_with_its_generator(name, mung_checkpoints, tiny_world):
    folder, original = mung_checkpoints(name)
    loaded = load(folder, options=LoadOptions(device="cpu"))
    assert loaded.backbone.name == "vlm" and loaded.noise_mode == "mean"
    processor = AutoProcessor.from_pretrained(folder)
    assert torch.equal(logits_of(loaded.model, processor, tiny_world), logits_of(original.eval(), processor, tiny_world))


@pytest.mark.parametrize("name", ["llava", "qwen3_vl", "gemma3"])
def test_a_generator_only_checkpoint_loads_over_its_base(name, mung_checkpoints, vlm_families, tiny_world, tmp_path):
    folder, original = mung_checkpoints(name)
    save_noise_generator(find_noise_generator(original), tmp_path)
    loaded = load(str(tmp_path), model_base=vlm_families[name], options=LoadOptions(device="cpu"))
    processor = AutoProcessor.from_pretrained(folder)
    assert torch.equal(logits_of(loaded.model, processor, tiny_world), logits_of(original.eval(), processor, tiny_world))
    stock = load(vlm_families[name], options=LoadOptions(device="cpu"))
    assert find_noise_generator(stock.model) is None and stock.noise_mode == "off"


# --- the shared commands ----------------------------------------------------------------------------------------


def questions_file(tiny_world, path, with_text_only: bool):
    rows = [json.loads(line) for line in open(tiny_world["eval_questions"])][:3]
    if with_text_only:
        rows.append({"question_id": "text-only", "text": "What colour is the sky? Answer with one word."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), len(rows)


def answer(folder, tiny_world, questions, out, *extra):
    model_vqa_loader.main(["--model-path", folder, "--question-file", questions, "--image-folder",
                           tiny_world["image_folder"], "--answers-file", str(out), "--temperature", "0",
                           "--max_new_tokens", "4", "--device", "cpu", "--num-workers", "0", *extra])
    return [json.loads(line) for line in open(out)]


@pytest.mark.parametrize("name", GENERIC)
def test_the_eval_command_answers_the_questions_batched_as_one_by_one(name, mung_checkpoints, tiny_world, tmp_path):
    folder, _ = mung_checkpoints(name)
    questions, count = questions_file(tiny_world, tmp_path / "q.jsonl", with_text_only=name not in NEEDS_AN_IMAGE)
    one = answer(folder, tiny_world, questions, tmp_path / "bs1.jsonl")
    batched = answer(folder, tiny_world, questions, tmp_path / "bs3.jsonl", "--batch-size", "3")
    assert len(one) == count and all(r["metadata"]["noise_mode"] == "mean (checkpoint default)" for r in one)
    assert [r["text"] for r in batched] == [r["text"] for r in one]
    assert any(r["text"] for r in one)


@pytest.mark.parametrize("name", GENERIC)
def test_the_chat_command_answers_two_turns(name, mung_checkpoints, tiny_world, monkeypatch, capsys):
    folder, _ = mung_checkpoints(name)
    image = os.path.join(tiny_world["image_folder"], json.loads(open(tiny_world["eval_questions"]).readline())["image"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\nAnd its colour?\n\n"))
    session = cli.run(cli.parse_args(["--model-path", folder, "--image-file", image, "--device", "cpu",
                                      "--temperature", "0", "--max-new-tokens", "4"]))
    assert [role for role, _ in session.turns] == ["user", "assistant", "user", "assistant"]
    assert session.turns[2][1] == "And its colour?" and session.last_prompt.count("And its colour?") == 1
    assert capsys.readouterr().out.rstrip().endswith("exit...")


def test_the_shared_commands_run_as_programs(mung_checkpoints, tiny_world, tmp_path):
    folder, _ = mung_checkpoints("gemma3")
    questions, count = questions_file(tiny_world, tmp_path / "q.jsonl", with_text_only=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "common")]))
    done = subprocess.run([sys.executable, "-m", "mung.eval.model_vqa_loader", "--model-path", folder, "--question-file",
                           questions, "--image-folder", tiny_world["image_folder"], "--answers-file",
                           str(tmp_path / "a.jsonl"), "--temperature", "0", "--max_new_tokens", "3", "--device", "cpu",
                           "--num-workers", "0"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(open(tmp_path / "a.jsonl").read().splitlines()) == count
    chat = subprocess.run([sys.executable, "-m", "mung.serve.cli", "--model-path", folder, "--device", "cpu",
                           "--temperature", "0", "--max-new-tokens", "3"], input="Hello\nAgain\n\n",
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.count("ASSISTANT: ") == 2 and chat.stdout.rstrip().endswith("exit...")


@pytest.mark.parametrize("name", GENERIC)
def test_noise_maps_follow_the_first_images_grid(name, mung_checkpoints, tiny_world):
    folder, _ = mung_checkpoints(name)
    loaded = load(folder, options=LoadOptions(device="cpu"))
    image = world_images(tiny_world, 1)[0]
    if name == "internvl":  # the tiny InternVL processor tiles a 112-pixel image into 4 tiles + a thumbnail
        with pytest.raises(ValueError, match="tiles"):
            noise_maps(loaded, image, "What color is it?")
        return
    maps, box = noise_maps(loaded, image, "What color is it?")
    rows, cols = maps["mu_norm"].shape
    assert rows * cols >= 4 and box is None and torch.isfinite(maps["mu_norm"]).all()
