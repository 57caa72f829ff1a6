"""The backbone contract of the shared app layer: how backbones are found and chosen, and the prompt rules every
backbone gets from it."""

import logging
from importlib.metadata import EntryPoint

import pytest
from PIL import Image

from mung import backbones
from mung.backbones import Backbone, Prompt


class _Served(Backbone):
    """A backbone that serves one model type (nothing else is called in these tests)."""

    name = "served"
    model_type = "served_type"

    def serves(self, config):
        return config.get("model_type") == self.model_type

    load_weights = load_processor = encode = collate = generate = image_grid = None


class _Fallback(_Served):
    name = "fallback"
    priority = -10

    def serves(self, config):
        return True


def test_installed_backbones_include_llava_and_qwen():
    names = {b.name for b in backbones.known_backbones()}
    assert {"llava", "qwen"} <= names


def test_a_config_goes_to_its_backbone_and_priority_decides_overlaps(monkeypatch):
    monkeypatch.setattr(backbones, "_registered", [])
    backbones.register(_Fallback())
    backbones.register(_Served())
    assert backbones.for_config({"model_type": "served_type"}, "x").name == "served"
    assert backbones.for_config({"model_type": "qwen2_5_vl"}, "x").name == "qwen"  # installed, priority 0
    assert backbones.for_config({"model_type": "anything_else"}, "x").name == "fallback"


def test_a_config_no_backbone_serves_is_refused_naming_the_file(monkeypatch):
    with pytest.raises(ValueError, match=r"ckpt/config.json holds a model of type 'nobody_serves_this'"):
        backbones.for_config({"model_type": "nobody_serves_this"}, "ckpt/config.json")


def test_a_broken_installed_backbone_is_skipped_with_a_warning(monkeypatch, caplog):
    good = list(backbones.entry_points(group=backbones.ENTRY_POINT_GROUP))
    broken = EntryPoint(name="broken", value="no_such_package.adapter:Backbone", group=backbones.ENTRY_POINT_GROUP)
    monkeypatch.setattr(backbones, "entry_points", lambda group: good + [broken])
    with caplog.at_level(logging.WARNING, logger="mung.backbones"):
        names = {b.name for b in backbones.known_backbones()}
    assert {"llava", "qwen"} <= names and "broken" not in names
    assert "Backbone 'broken' (no_such_package.adapter:Backbone) cannot be imported" in caplog.text


def test_a_question_puts_its_images_first_unless_it_places_them():
    image = Image.new("RGB", (4, 4))
    assert Prompt.question("What is it?", [image]).turns == [("user", "<image>\nWhat is it?")]
    assert Prompt.question("Left <image> right", [image]).turns == [("user", "Left <image> right")]
    assert Prompt.question("No image").turns == [("user", "No image")]


def test_a_prompt_needs_one_image_per_placeholder_and_a_last_user_turn():
    with pytest.raises(ValueError, match=r"2 <image> placeholder\(s\) for 1 image"):
        Prompt([("user", "<image><image>")], [Image.new("RGB", (4, 4))]).check()
    with pytest.raises(ValueError, match="must end with a user turn"):
        Prompt([("user", "hi"), ("assistant", "hello")]).check()
