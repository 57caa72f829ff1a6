"""One image decoding for every path (issue 12, item 6): ``mung.images.load_image`` / ``to_rgb`` is right for every mode
PIL decodes, each checked against a pixel worked out by hand, and the training data of both backbones decodes through
it (before, LLaVA's data called ``convert("RGB")`` and Qwen's qwen-vl-utils did, which turns a 16-bit PNG white)."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer

from llava_noise.model.multimodal_encoder import CLIPVisionTower
from llava_noise.train.data import LazySupervisedDataset
from mung.images import load_image, to_rgb
from qwen_noise.data import QwenSupervisedDataset
from qwen_noise.data.prompting import encode_images


def one_pixel(mode, value, **info):
    image = Image.new(mode, (1, 1))
    image.putpixel((0, 0), value)
    image.info.update(info)
    return image


def palette_image(transparent: bool, rgba_palette: bool = False):
    """A 2x1 palette image: index 0 red, index 1 blue; index 1 transparent when asked."""
    image = Image.new("P", (2, 1))
    if rgba_palette:
        image.putpalette([255, 0, 0, 255, 0, 0, 255, 0] + [0, 0, 0, 255] * 254, "RGBA")
    else:
        image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
        if transparent:
            image.info["transparency"] = 1
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    return image


# Expected values by hand. Alpha a over white: c * a/255 + 255 * (1 - a/255). CMYK: 255 (1 - c/255)(1 - k/255).
# YCbCr (JPEG, full range): R = Y + 1.402 (Cr - 128), G = Y - 0.344 (Cb - 128) - 0.714 (Cr - 128), B = Y + 1.772 (Cb - 128).
# LAB 128,128,128: L* = 50.2, a* = b* = 0 → Y = ((50.2 + 16) / 116)^3 = 0.1845 → sRGB 1.055 Y^(1/2.4) - 0.055 = 0.467 → 119.
CASES = {
    "1": (one_pixel("1", 1), (255, 255, 255)),
    "L": (one_pixel("L", 100), (100, 100, 100)),
    "LA opaque": (one_pixel("LA", (100, 255)), (100, 100, 100)),
    "LA half": (one_pixel("LA", (100, 128)), (177, 177, 177)),  # 100*.502 + 255*.498 = 177.2
    "La (premultiplied)": (one_pixel("La", (50, 128)), (177, 177, 177)),  # 50 + 255*.498 = 177.0
    "RGB": (one_pixel("RGB", (10, 20, 30)), (10, 20, 30)),
    "RGBA half": (one_pixel("RGBA", (200, 100, 0, 128)), (227, 177, 127)),
    "RGBA clear": (one_pixel("RGBA", (0, 0, 0, 0)), (255, 255, 255)),
    "RGBa (premultiplied)": (one_pixel("RGBa", (100, 50, 0, 128)), (227, 177, 127)),
    "CMYK red": (one_pixel("CMYK", (0, 255, 255, 0)), (255, 0, 0)),
    "CMYK mixed": (one_pixel("CMYK", (128, 0, 0, 128)), (63, 127, 127)),  # 255*(127/255)^2 = 63.3
    "YCbCr": (one_pixel("YCbCr", (128, 128, 255)), (255, 37, 128)),  # G = 128 - 0.714*127 = 37.3
    "LAB grey": (one_pixel("LAB", (128, 128, 128)), (119, 119, 119)),
    "HSV blue": (one_pixel("HSV", (170, 255, 255)), (0, 0, 255)),  # hue 170/255*360 = 240°
    "I 8-bit values": (one_pixel("I", 100), (100, 100, 100)),
    "I 16-bit values": (one_pixel("I", 32896), (128, 128, 128)),  # 32896 * 255/65535 = 128.0
    "I;16": (one_pixel("I;16", 32896), (128, 128, 128)),
    "I;16 dark": (one_pixel("I;16", 200), (1, 1, 1)),  # 200 * 255/65535 = 0.78 → 1
    "F fraction": (one_pixel("F", 0.5), (128, 128, 128)),  # 127.5 rounds to 128
    "F 0..255": (one_pixel("F", 100.4), (100, 100, 100)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_mode_gives_the_pixel_worked_out_by_hand(name):
    image, expected = CASES[name]
    rgb = load_image(image)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == expected


@pytest.mark.parametrize("transparent, rgba_palette, second", [
    (False, False, (0, 0, 255)), (True, False, (255, 255, 255)), (False, True, (255, 255, 255))])
def test_palette_images_with_and_without_transparency(transparent, rgba_palette, second):
    rgb = to_rgb(palette_image(transparent, rgba_palette))
    assert [rgb.getpixel((x, 0)) for x in range(2)] == [(255, 0, 0), second]


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sixteen_bit_png(value: int = 32896, size=(16, 16)) -> bytes:
    return png_bytes(Image.fromarray(np.full(size[::-1], value, dtype=np.uint16)))


def test_a_16_bit_png_file_keeps_its_grey_levels():
    assert Image.open(io.BytesIO(sixteen_bit_png())).mode == "I;16"  # what PIL decodes it as
    values = np.array([[0, 65535], [2570, 51400]], dtype=np.uint16)  # 0, 255, 10 and 200 in 8 bits
    rgb = load_image(png_bytes(Image.fromarray(values)))
    assert [rgb.getpixel((x, y))[0] for y in range(2) for x in range(2)] == [0, 255, 10, 200]


def test_a_palette_png_with_a_transparent_entry_is_white_there():
    rgb = load_image(png_bytes(palette_image(transparent=True)))
    assert [rgb.getpixel((x, 0)) for x in range(2)] == [(255, 0, 0), (255, 255, 255)]


def test_a_cmyk_jpeg_file_gives_its_rgb():
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, format="JPEG", quality=100)
    r, g, b = load_image(buffer.getvalue()).getpixel((8, 8))
    assert r >= 250 and g <= 5 and b <= 5


def test_an_exif_rotated_jpeg_is_shown_upright_once():
    """Stored 32x16, left half red, right half blue, EXIF orientation 6 (rotate 90° clockwise to show): shown 16x32
    with red on top, and decoding the result again changes nothing."""
    stored = Image.new("RGB", (32, 16), (255, 0, 0))
    stored.paste((0, 0, 255), (16, 0, 32, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=100, exif=exif)
    shown = load_image(buffer.getvalue())
    assert shown.size == (16, 32)
    top, bottom = shown.getpixel((8, 4)), shown.getpixel((8, 27))
    assert top[0] > 240 and top[2] < 15 and bottom[2] > 240 and bottom[0] < 15
    assert to_rgb(shown).size == (16, 32)


# --- the training data of both backbones decodes through the same function -------------------------------------
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modes")
    (folder / "grey16.png").write_bytes(sixteen_bit_png())
    (folder / "clear.png").write_bytes(png_bytes(Image.new("RGBA", (16, 16), (0, 0, 0, 0))))
    return folder


def write_data(folder, name):
    path = folder / f"data-{name}.json"
    path.write_text(json.dumps([{"id": "s", "image": name, "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "grey"}]}]))
    return path


@pytest.mark.parametrize("name", ["grey16.png", "clear.png"])
def test_llava_training_pixels_are_those_of_the_shared_decoding(world, image_folder, name):
    tokenizer = AutoTokenizer.from_pretrained(world["llava_llm"])
    tower = CLIPVisionTower(world["llava_vision_tower"])
    tower.load_model()
    dataset = LazySupervisedDataset(str(write_data(image_folder, name)), tokenizer, "v1", str(image_folder),
                                    tower.image_processor, "square", tower.num_patches, 256, on_bad_sample="raise")
    expected = tower.image_processor(images=[load_image(image_folder / name)], return_tensors="pt")["pixel_values"][0]
    assert torch.equal(dataset[0]["images"][0], expected)
    white = tower.image_processor(images=[Image.new("RGB", (16, 16), "white")], return_tensors="pt")["pixel_values"][0]
    assert torch.equal(expected, white) == (name == "clear.png")  # a transparent image is white; grey is not


@pytest.mark.parametrize("name", ["grey16.png", "clear.png"])
def test_qwen_training_pixels_are_those_of_the_shared_decoding(world, image_folder, name):
    processor = AutoProcessor.from_pretrained(world["qwen_model"])
    dataset = QwenSupervisedDataset(write_data(image_folder, name), processor, image_folder=image_folder,
                                    on_bad_sample="raise")
    expected, _ = encode_images(processor, [load_image(image_folder / name)])
    white, _ = encode_images(processor, [Image.new("RGB", (16, 16), "white")])
    assert torch.equal(dataset[0]["pixel_values"], expected)
    assert torch.equal(expected, white) == (name == "clear.png")
