"""Tiny world builder version 5: the LLaVA CLIP tower's position embeddings at a patch feature's size, everything
else as version 4 (a frozen random tower must say where a shape is, or no LLaVA base learns left from right)."""

import torch
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPVisionModel

import tiny_world as tw
from tiny_world.models import POSITION_EMBEDDING_SCALE, save_clip_tower
from tiny_world.presets import get_preset

POSITION_KEY = "embeddings.position_embedding.weight"


def towers(tmp_path):
    preset = get_preset("tiny")
    save_clip_tower(str(tmp_path / "v4"), preset, seed=0, placed=False)
    save_clip_tower(str(tmp_path / "v5"), preset, seed=0, placed=True)
    return [load_file(str(tmp_path / v / "model.safetensors")) for v in ("v4", "v5")]


def test_version_5_scales_the_position_embeddings_only(tmp_path):
    v4, v5 = towers(tmp_path)
    key = next(k for k in v5 if k.endswith(POSITION_KEY))
    assert set(v4) == set(v5)
    assert torch.equal(v5[key], v4[key] * 25.0) and POSITION_EMBEDDING_SCALE == 25.0
    assert all(torch.equal(v4[k], v5[k]) for k in v4 if k != key)
    assert 0.4 < v5[key].std().item() < 0.6  # about what one patch of an image shows (patch features' std ~0.5)


def place_features(folder, side):
    """The tower's features (LLaVA's select layer -2) of one red square at the left or the right of white."""
    image = torch.ones(3, 56, 56)
    cols = slice(4, 24) if side == "left" else slice(32, 52)
    image[1:, 18:38, cols] = 0.0
    processor = CLIPImageProcessor.from_pretrained(folder)
    pixels = processor(images=[(image * 255).byte().permute(1, 2, 0).numpy()], return_tensors="pt").pixel_values
    out = CLIPVisionModel.from_pretrained(folder)(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[-2][0, 1:]  # patches, no CLS


def test_a_version_5_tower_shows_where_a_shape_is_far_more_than_version_4(tmp_path):
    towers(tmp_path)
    contrast = {}
    for version in ("v4", "v5"):
        left, right = (place_features(str(tmp_path / version), side) for side in ("left", "right"))
        # The mean patch feature: what a model sees if it pools the image. Left vs right must differ there.
        contrast[version] = ((left.mean(0) - right.mean(0)).norm() / left.mean(0).norm()).item()
    assert contrast["v5"] > 4 * contrast["v4"], contrast


def test_the_default_world_is_version_5_and_version_4_still_builds(tiny_world):
    assert tw.BUILDER_VERSION == 5 and tiny_world["version"] == 5
    assert 4 in tw.manifest.VERSIONS and 3 in tw.manifest.VERSIONS
