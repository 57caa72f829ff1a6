"""The shared pieces the servers are built from: the image pixel bound, token counts and finish reasons of a reply,
the noise figure with its colour bar, example rows, and the servers' flags. Expected values are written by hand."""

import base64
import io
import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from mung.answering import _reply
from mung.generation import GenerationSettings
from mung.images import ImageLoadError, load_image
from mung.serve import api, web
from mung.serve.examples import GENERIC_QUESTION, example_rows
from mung.serve.options import check_server_args
from mung.visualize import noise_figure, range_labels, render_overlay


def png_bytes(size, colour=(10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_over_the_pixel_bound_are_refused_from_the_header(tmp_path):
    data = png_bytes((300, 200))
    path = tmp_path / "wide.png"
    path.write_bytes(data[: len(data) // 2])  # truncated: only the header is intact
    with pytest.raises(ImageLoadError, match=r"300x200 = 60,000 pixels, over the limit of 59,999"):
        load_image(str(path), max_pixels=59_999)  # refused before decoding would find the truncation
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(str(path), max_pixels=60_000)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert load_image(url, max_pixels=60_000).size == (300, 200)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(url, max_pixels=100)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(Image.new("RGB", (11, 10)), max_pixels=100)


PAD, EOS = 0, 2


@pytest.mark.parametrize("ids, text, budget, expected", [
    ([5, 6, EOS, PAD, PAD], "a b", 5, (2 + 1, "stop")),  # ended by EOS; the padding after it is no output
    ([5, 6, 7], "a b c", 3, (3, "length")),  # the budget ran out
    ([5, 6, 7], "a ### c", 3, (3, "stop")),  # a stop string, even at the budget
    ([5, 6, PAD], "a b", 5, (2, "stop")),  # a row of a batch that a stop criterion ended early
    ([5, EOS, PAD], "a", 2, (2, "stop")),  # EOS as the last allowed token
])
def test_replies_count_generated_tokens_and_say_why_they_ended(ids, text, budget, expected):
    tokenizer = SimpleNamespace(pad_token_id=PAD, all_special_ids=[PAD, EOS, 1])
    reply = _reply(SimpleNamespace(tokenizer=tokenizer), torch.tensor(ids), text, ["###"], budget)
    assert (reply.new_tokens, reply.finish_reason) == expected
    assert reply.text == text.split("###")[0].strip()


def test_generation_settings_pass_top_k_and_repetition_penalty():
    sampled = GenerationSettings(temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.2).generate_kwargs()
    assert (sampled["top_k"], sampled["top_p"], sampled["repetition_penalty"]) == (5, 0.9, 1.2)
    greedy = GenerationSettings(temperature=0, top_k=5, repetition_penalty=1.2).generate_kwargs()
    assert greedy["do_sample"] is False and greedy["top_k"] is None and greedy["repetition_penalty"] == 1.2
    with pytest.raises(ValueError, match="top_k"):
        GenerationSettings(top_k=-1)
    with pytest.raises(ValueError, match="repetition_penalty"):
        GenerationSettings(repetition_penalty=0)


def test_range_labels_keep_just_enough_digits():
    assert range_labels(0.1, 0.9) == ("0.1", "0.9")
    assert range_labels(0.0394791, 0.0394812) == ("0.039479", "0.039481")
    assert range_labels(2.0, 2.0) == ("2", "2")


def test_noise_figure_is_the_overlay_at_image_size_over_its_colour_bar():
    image = Image.new("RGB", (90, 60), (255, 255, 255))
    values = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    figure = noise_figure(image, values, "mu_norm")
    assert figure.width == 320 and figure.height > 60 + 40  # widened for the legend; the key is underneath
    left = (320 - 90) // 2
    overlay = figure.crop((left, 0, left + 90, 60))
    assert overlay.tobytes() == render_overlay(image, values).tobytes()
    # The ramp spans the width less 8 px on each side: its ends are the colour map's ends.
    bar_row = next(y for y in range(60, figure.height) if figure.getpixel((8, y)) == (20, 30, 120))
    assert figure.getpixel((320 - 9, bar_row)) == (220, 40, 30)
    wide = noise_figure(Image.new("RGB", (400, 50)), values, "sigma_mean")
    assert wide.width == 400 and wide.crop((0, 0, 400, 50)).size == (400, 50)


def test_examples_come_from_a_tiny_world_or_a_folder_of_images(tmp_path):
    world = tmp_path / "world"
    (world / "images" / "eval").mkdir(parents=True)
    (world / "images" / "eval" / "0.png").write_bytes(png_bytes((4, 4)))
    (world / "q.jsonl").write_text(json.dumps({"image": "eval/0.png", "text": "What colour?\nOne word."}) + "\n")
    (world / "manifest.json").write_text(json.dumps({"eval_questions": "q.jsonl", "image_folder": "images"}))
    expected = [(str(world / "images" / "eval" / "0.png"), "What colour?\nOne word.")]
    assert example_rows(world) == expected and example_rows(world / "manifest.json") == expected
    (world / "shift.jsonl").write_text("".join(json.dumps({"image": f"eval/{i}.png", "text": f"s{i}"}) + "\n"
                                               for i in range(3)))
    (world / "manifest.json").write_text(json.dumps({"eval_questions": "q.jsonl", "image_folder": "images",
                                                     "shift_eval_questions": "shift.jsonl"}))
    shifted = [str(world / "images" / "eval" / f"{i}.png") for i in range(2)]
    assert example_rows(world, limit=5) == expected + [(shifted[0], "s0"), (shifted[1], "s1")]  # 3 asked, 1 there
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (folder / name).write_bytes(png_bytes((2, 2)))
    assert example_rows(folder) == [(str(folder / "a.jpg"), GENERIC_QUESTION), (str(folder / "b.png"), GENERIC_QUESTION)]
    with pytest.raises(ValueError, match="no images"):
        example_rows(tmp_path / "world" / "images")
    with pytest.raises(ValueError, match="not a folder"):
        example_rows(tmp_path / "missing")


def test_servers_listen_on_loopback_unless_told_otherwise():
    args = api.parse_args(["--model-path", "x"])
    assert (args.host, args.port, args.api_key, args.allow_remote_images) == ("127.0.0.1", 8000, None, False)
    args = web.parse_args(["--model-path", "x"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    with pytest.raises(SystemExit, match="--queue-size must be at least 1"):
        check_server_args(api.parse_args(["--model-path", "x", "--queue-size", "0"]))
