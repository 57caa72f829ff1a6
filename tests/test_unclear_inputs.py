"""Crashes and unclear messages on bad input (issue 12, item 11): each one becomes a one-line message naming the file,
the line or question and the field, and what to do."""

import json

import pytest

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
