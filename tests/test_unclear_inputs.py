"""Crashes and unclear messages on bad input (issue 12, item 11): each one becomes a one-line message naming the file,
the line or question and the field, and what to do."""

import json

import pytest
from PIL import Image

from llava_builders import tiny_llava_config
from mung.loading import LoadOptions, load
from noise_generator import NoiseGeneratorConfig


# --- generator configs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting, value, said", [
    ("num_heads", "8", r"\"num_heads\": '8' must be an int, not str \(write it without quotes\)"),
    ("log_sigma_max", "2", r"\"log_sigma_max\": '2' must be a finite number, not str \(write it without quotes\)"),
    ("sample_noise", "false", r"\"sample_noise\": 'false' must be true or false, not str \(write it without quotes\)"),
    ("num_samples", True, r"\"num_samples\": True must be an int, not bool"),
])
def test_a_generator_setting_of_the_wrong_type_names_the_file_and_setting(tmp_path, setting, value, said):
    path = tmp_path / "noise_generator_config.json"
    path.write_text(json.dumps({**NoiseGeneratorConfig(hidden_size=16, num_heads=4).to_dict(), setting: value}))
    with pytest.raises(ValueError, match=rf"^{path}: {said}\. Fix it there\.$"):
        NoiseGeneratorConfig.from_json_file(path)


def test_a_checkpoint_config_with_a_bad_generator_setting_is_named_before_loading(world, tmp_path):
    tiny_llava_config(world, generator={"base_model_type": "llava_noise"}).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["noise_generator"]["num_heads"] = "4"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")  # the check comes before any weights are read
    with pytest.raises(ValueError, match=rf"{tmp_path / 'config.json'} \(noise_generator\): \"num_heads\": '4' must "
                                         "be an int"):
        load(str(tmp_path), options=LoadOptions(device="cpu"))


# --- training data and images: non-UTF-8 bytes, symlink loops, images over PIL's pixel limit --------------------------
@pytest.fixture(scope="module")
def parts(tiny_world):
    from transformers import AutoProcessor, AutoTokenizer

    from llava_noise.model.multimodal_encoder import CLIPVisionTower

    tower = CLIPVisionTower(tiny_world["llava_vision_tower"])
    tower.load_model()
    return AutoTokenizer.from_pretrained(tiny_world["llava_llm"]), tower, AutoProcessor.from_pretrained(tiny_world["qwen_model"])


def training_dataset(backbone, path, parts, image_folder=None):
    from llava_noise.train.data import LazySupervisedDataset
    from qwen_noise.data import QwenSupervisedDataset

    tokenizer, tower, processor = parts
    if backbone == "llava":
        return LazySupervisedDataset(str(path), tokenizer, "v1", str(image_folder), tower.image_processor, "pad",
                                     tower.num_patches, 256, on_bad_sample="raise")
    return QwenSupervisedDataset(path, processor, image_folder=image_folder, on_bad_sample="raise")


def one_sample(image):
    return {"id": "s1", "image": image, "conversations": [
        {"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]}


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_non_utf8_training_data_names_the_file_and_line(parts, tmp_path, backbone, suffix):
    path = tmp_path / f"data{suffix}"
    text = json.dumps(one_sample("a.png")).replace("Colour", "Colo\udcffur")
    lines = [json.dumps(one_sample("a.png")), text] if suffix == ".jsonl" else ["[", json.dumps(one_sample("a.png")) + ",", text, "]"]
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(ValueError, match=rf"^{path}:{line}: byte 0xff is not UTF-8; save the file as UTF-8\.$"):
        training_dataset(backbone, path, parts, tmp_path)


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_training_images_that_loop_or_are_too_big_are_named_as_such(parts, tmp_path, backbone, monkeypatch):
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "big.png")
    for name, said in [("loop.png", r"loop\.png is a symbolic link loop"),
                       ("big.png", r"big\.png has more pixels than PIL allows")]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps([one_sample(name)]))
        dataset = training_dataset(backbone, path, parts, tmp_path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        with pytest.raises(ValueError, match=rf"s1.*{said}") as caught:
            dataset[0]
        monkeypatch.undo()
        assert "does not exist" not in str(caught.value) and "corrupt" not in str(caught.value)


def test_cli_images_that_loop_or_are_too_big_are_named_before_loading(tmp_path, monkeypatch):
    from mung.serve import cli

    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for name, said in [("loop.png", "is a symbolic link loop"), ("big.png", "has more pixels than PIL allows")]:
        with pytest.raises(SystemExit, match=said):
            cli.run(cli.parse_args(["--model-path", str(tmp_path / "never"), "--image-file", str(tmp_path / name)]))


@pytest.mark.parametrize("backbone", ["llava", "qwen"])
def test_training_files_that_loop_are_named_as_loops(parts, tmp_path, backbone):
    from mung.training.distributed import check_deepspeed_lr_groups

    loop = tmp_path / "data.json"
    loop.symlink_to(loop)
    with pytest.raises(FileNotFoundError, match=r"data\.json is a symbolic link loop"):
        training_dataset(backbone, loop, parts, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"--deepspeed .*data\.json: is a symbolic link loop"):
        check_deepspeed_lr_groups(str(loop), {"--ng_lr": 1e-3})


def test_a_model_whose_config_and_generator_file_disagree_is_refused_naming_both(world, tmp_path):
    """Issue 19 §5: config.json says 8 heads, noise_generator_config.json says 4: refused naming both files and the
    setting, before any weights load (it used to load with one of them silently)."""
    folder = tmp_path / "ckpt"
    config = tiny_llava_config(world, generator={"num_heads": 8})
    config.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"never read")
    (folder / "noise_generator.safetensors").write_bytes(b"never read")
    NoiseGeneratorConfig(hidden_size=config.hidden_size, num_heads=4).to_json_file(folder / "noise_generator_config.json")
    with pytest.raises(ValueError, match=rf"{folder}/config\.json \(noise_generator\) and {folder}/"
                                         r"noise_generator_config\.json describe different generators \(num_heads: 8 "
                                         r"vs 4, config\.json first\)"):
        load(str(folder), None, LoadOptions(device="cpu"))
