"""Backbone-independent parts of the noise visualisation."""

import pytest
import torch
from PIL import Image

from noise_generator import NoiseGenerator, NoiseGeneratorConfig
from mung.visualize import render_overlay, save_noise_figures, token_maps
from noise_generator import capture_noise


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.noise_generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=8, num_heads=2))

    def forward(self, images, text):
        return self.noise_generator(images, text, torch.ones(text.shape[:2], dtype=torch.bool))


def test_capture_forces_the_mode_and_restores_the_generator():
    toy = _Toy().train()
    images, text = [torch.randn(4, 8)], torch.randn(1, 3, 8)
    with capture_noise(toy, mode="mean") as captured:
        toy(images, text)
    assert captured.last().mode == "mean"
    assert toy(images, text).mode == "sample"  # hook removed: training samples again
    with pytest.raises(ValueError, match="no noise generator"):
        with capture_noise(torch.nn.Linear(2, 2)):
            pass


def test_token_maps_are_norms_and_sigma_means_per_patch():
    toy = _Toy()
    images, text = [torch.randn(6, 8)], torch.randn(1, 3, 8)
    with capture_noise(toy) as captured:
        toy(images, text)
    out = captured.last()
    maps = token_maps(out, (2, 3))
    assert maps["mu_norm"].shape == (2, 3)
    torch.testing.assert_close(maps["mu_norm"][1, 2], out.mu[0][5].norm())
    torch.testing.assert_close(maps["sigma_mean"][0, 1], out.log_sigma[0][1].exp().mean())
    with pytest.raises(ValueError, match="Expected 9 image tokens"):
        token_maps(out, (3, 3))


def test_overlay_keeps_the_image_size_and_follows_the_values(tmp_path):
    image = Image.new("RGB", (90, 60), (255, 255, 255))
    hot_left = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    hot_right = hot_left.flip(-1)
    a, b = render_overlay(image, hot_left), render_overlay(image, hot_right)
    assert a.size == image.size
    # The hot side is drawn red, the cold side blue.
    assert a.getpixel((5, 30))[0] > a.getpixel((85, 30))[0]
    assert b.getpixel((85, 30))[0] > b.getpixel((5, 30))[0]
    paths = save_noise_figures(image, {"mu_norm": hot_left, "sigma_mean": hot_right}, str(tmp_path / "n.png"))
    assert [Image.open(p).size for p in paths] == [(90, 60), (90, 60)]


def test_content_box_crops_the_padding_away():
    image = Image.new("RGB", (80, 40), (255, 255, 255))
    grid = torch.zeros(4, 4)
    grid[:1] = 1.0  # only the padding rows (top quarter) are hot
    out = render_overlay(image, grid, content_box=(0.0, 0.25, 1.0, 0.75))
    top = out.getpixel((40, 1))
    assert top[0] < 150  # cropped: the hot padding row is not drawn over the image
