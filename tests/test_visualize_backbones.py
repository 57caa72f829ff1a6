"""Noise visualisation through both backbones on the tiny world: PNGs at the image's size that follow the question."""

import json

import pytest
from PIL import Image, ImageChops

from qwen_builders import build_tiny_qwen
from test_eval_inference import build_tiny_llava


def first_eval_image(tiny_world) -> str:
    with open(tiny_world["eval_questions"]) as handle:
        return f"{tiny_world['image_folder']}/{json.loads(handle.readline())['image']}"


def differ(a: str, b: str) -> bool:
    return ImageChops.difference(Image.open(a).convert("RGB"), Image.open(b).convert("RGB")).getbbox() is not None


@pytest.fixture(scope="module")
def tiny_qwen(tiny_world, tmp_path_factory):
    return build_tiny_qwen(tiny_world, tmp_path_factory.mktemp("qwen-viz"))


def test_llava_figures_have_the_image_size_and_change_with_the_question(tiny_world, tmp_path):
    from llava_noise import visualize

    checkpoint = build_tiny_llava(tiny_world, tmp_path / "ckpt")
    image = first_eval_image(tiny_world)
    common = ["--model-path", checkpoint, "--image-file", image, "--device", "cpu"]
    a = visualize.main(common + ["--question", "What color is the circle?", "--out", str(tmp_path / "a.png")])
    b = visualize.main(common + ["--question", "How many squares are there?", "--out", str(tmp_path / "b.png")])
    size = Image.open(image).size
    assert [Image.open(p).size for p in a + b] == [size] * 4
    # ‖μ‖ follows the question (keys are the prompt). The random generator's log σ saturates at its clamp here, so
    # its σ map need not change; the Qwen test below covers a σ map that does.
    assert differ(a[0], b[0])


def test_llava_padding_box_matches_the_square_the_tower_sees():
    from llava_noise.adapter import padded_content_box

    assert padded_content_box(Image.new("RGB", (200, 100)), "pad") == (0.0, 0.25, 1.0, 0.75)
    assert padded_content_box(Image.new("RGB", (200, 100)), "resize") is None


def test_qwen_figures_have_the_image_size_and_change_with_the_question(tiny_world, tiny_qwen, tmp_path):
    from qwen_noise import visualize

    image = first_eval_image(tiny_world)
    common = ["--model-path", tiny_qwen, "--image-file", image, "--device", "cpu"]
    a = visualize.main(common + ["--question", "What color is the circle?", "--out", str(tmp_path / "a.png")])
    b = visualize.main(common + ["--question", "How many squares are there?", "--out", str(tmp_path / "b.png")])
    size = Image.open(image).size
    assert [Image.open(p).size for p in a + b] == [size] * 4
    assert differ(a[0], b[0]) and differ(a[1], b[1])
