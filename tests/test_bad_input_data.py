"""Bad training data, both backbones: every case raises a message naming the file/sample (and line) and what to do,
or (``on_bad_sample="skip"``) is skipped and counted while the good samples still come through."""

import json
import logging
import shutil

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer

from llava_noise.model.multimodal_encoder import CLIPVisionTower
from llava_noise.train.data import DataCollatorForSupervisedDataset, LazySupervisedDataset, SampleError
from qwen_noise.data import BadSample, QwenDataCollator, QwenSupervisedDataset

BACKBONES = ("llava", "qwen")
MAX_LENGTH = 256


@pytest.fixture(scope="module")
def llava_parts(tiny_world):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world["llava_llm"])
    tokenizer.pad_token = tokenizer.unk_token
    tower = CLIPVisionTower(tiny_world["llava_vision_tower"])
    tower.load_model()
    return tokenizer, tower


@pytest.fixture(scope="module")
def qwen_processor(tiny_world):
    return AutoProcessor.from_pretrained(tiny_world["qwen_model"])


@pytest.fixture(scope="module")
def images(tiny_world, tmp_path_factory):
    """A folder with one good image and bad ones (truncated, not an image, 1x500, 500x1)."""
    folder = tmp_path_factory.mktemp("bad_images")
    good = f"{tiny_world['image_folder']}/train/00000.png"
    shutil.copy(good, folder / "good.png")
    (folder / "truncated.png").write_bytes(open(good, "rb").read()[:100])
    (folder / "text.png").write_bytes(b"this is not an image")
    Image.new("RGB", (1, 500), "white").save(folder / "thin.png")
    Image.new("RGB", (500, 1), "white").save(folder / "flat.png")
    return folder


def sample(image="good.png", human="<image>\nWhat colour is it?", reply="red", sid="s0"):
    record = {"id": sid, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": reply}]}
    if image is not None:
        record["image"] = image
    return record


def dataset(backbone, records, tmp_path, images, llava_parts, qwen_processor, on_bad_sample="raise", suffix=".json",
            max_bad_sample_share=0.01):
    path = tmp_path / f"data{suffix}"
    if isinstance(records, str):
        path.write_text(records)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    if backbone == "llava":
        tokenizer, tower = llava_parts
        return LazySupervisedDataset(str(path), tokenizer, "v1", str(images), tower.image_processor, "pad",
                                     tower.num_patches, MAX_LENGTH, on_bad_sample=on_bad_sample,
                                     max_bad_sample_share=max_bad_sample_share)
    return QwenSupervisedDataset(path, qwen_processor, image_folder=images, model_max_length=MAX_LENGTH,
                                 on_bad_sample=on_bad_sample, max_bad_sample_share=max_bad_sample_share)


def bad_sample_error(backbone):
    return SampleError if backbone == "llava" else BadSample


@pytest.fixture(params=BACKBONES)
def make(request, tmp_path, images, llava_parts, qwen_processor):
    backbone = request.param

    def build(records, **kwargs):
        return dataset(backbone, records, tmp_path, images, llava_parts, qwen_processor, **kwargs)

    build.backbone = backbone
    build.error = bad_sample_error(backbone)
    return build


def test_missing_image_names_file_and_sample(make):
    ds = make([sample(image="nope.png", sid="miss-1")])
    with pytest.raises(make.error, match=r"miss-1.*nope\.png does not exist.*[Cc]heck .*image folder|image_folder"):
        ds[0]


@pytest.mark.parametrize("name", ["truncated.png", "text.png"])
def test_corrupt_or_truncated_image_is_reported_as_corrupt(make, name):
    ds = make([sample(image=name, sid="bad-img")])
    with pytest.raises(make.error, match=rf"bad-img.*{name} cannot be decoded.*corrupt or truncated.*Re-create"):
        ds[0]


@pytest.mark.parametrize("name", ["thin.png", "flat.png"])
def test_qwen_rejects_extreme_aspect_ratio_clearly(make, name):
    if make.backbone == "llava":
        pixels = make([sample(image=name)])[0]["images"][0]  # padded to a square, then resized
        assert pixels.shape == (3, 56, 56) and torch.isfinite(pixels).all()
        return
    with pytest.raises(BadSample, match=rf"s0: image .*{name} is \d+x\d+ \(aspect ratio 500\).*at most 200:1.*Pad or crop"):
        make([sample(image=name)])[0]


@pytest.mark.parametrize("suffix,text,line", [
    (".json", '[\n {"id": "a",\n  "conversations": [}\n]\n', 3),
    (".jsonl", json.dumps(sample()) + "\n" + json.dumps(sample()) + "\n{\"id\": 3,, }\n", 3),
])
def test_json_syntax_error_names_the_line_up_front(make, suffix, text, line):
    with pytest.raises(ValueError, match=rf"data{suffix}.*(:| line ){line}: not valid JSON.*fix"):
        make(text, suffix=suffix)


def test_missing_data_file_is_named(make, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json does not exist; pass the training"):
        if make.backbone == "llava":
            LazySupervisedDataset(str(tmp_path / "nowhere.json"), None, "v1")
        else:
            QwenSupervisedDataset(tmp_path / "nowhere.json", None)


def test_empty_conversation_is_a_bad_sample(make):
    ds = make([{"id": "empty-1", "conversations": []}])
    with pytest.raises(make.error, match=r"empty-1.*conversation is empty; give it a human turn and a gpt reply"):
        ds[0]


def test_conversation_without_assistant_turn_is_a_bad_sample(make):
    ds = make([{"id": "mute-1", "image": "good.png", "conversations": [{"from": "human", "value": "<image>\nHi?"}]}])
    with pytest.raises(make.error, match=r"mute-1.*no assistant .*gpt.* turn.*add the reply or remove the sample"):
        ds[0]


def test_image_token_count_must_match_images(make):
    ds = make([sample(human="<image><image>\nWhich is red?", sid="two-tags")])
    with pytest.raises(make.error, match=r"two-tags.*2 <image> .* 1 image.*use one .*per image"):
        ds[0]


def test_sample_longer_than_model_max_length_is_a_bad_sample(make):
    ds = make([sample(human="<image>\n" + "word " * 400, sid="long-1")])
    with pytest.raises(make.error, match=r"long-1.*(no answer token is left|no supervised \(answer\) token left).*"
                                         r"model_max_length.*raise --model_max_length"):
        ds[0]


def test_jsonl_sample_errors_name_the_line(tmp_path, images, llava_parts, qwen_processor):
    ds = dataset("qwen", [sample(), sample(image="nope.png", sid="third")], tmp_path, images, llava_parts,
                 qwen_processor, suffix=".jsonl")
    with pytest.raises(BadSample, match=r"data\.jsonl sample 1 \(line 2\) id third"):
        ds[1]


def test_skip_uses_next_good_sample_and_counts_distinct_bad_ones(make, caplog):
    records = [sample(sid="ok-0"), sample(image="nope.png", sid="bad-1"), {"id": "bad-2", "conversations": []},
               sample(sid="ok-3")]
    ds = make(records, on_bad_sample="skip", max_bad_sample_share=1.0)  # 2 of 4 bad: no stop here
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))] + [ds[1]]  # bad-1 again: counted once
    names = [item["sample_id"] for item in items]
    assert ["ok-0" in names[0], "ok-3" in names[1], "ok-3" in names[2], "ok-3" in names[3]] == [True] * 4
    assert ds.skipped == 2
    assert "Skipping bad sample (1 skipped" in caplog.text and "Skipping bad sample (2 skipped" in caplog.text
    assert "bad-1" in caplog.text and "bad-2" in caplog.text


def test_collators_carry_sample_ids_only_when_asked(make):
    ds = make([sample(sid="first"), sample(image=None, human="Say red.", sid="second")])
    items = [ds[0], ds[1]]
    if make.backbone == "llava":
        tokenizer = ds.tokenizer
        plain, with_ids = DataCollatorForSupervisedDataset(tokenizer), DataCollatorForSupervisedDataset(tokenizer, True)
    else:
        pad = ds.tokenizer.pad_token_id
        plain, with_ids = QwenDataCollator(pad), QwenDataCollator(pad, return_sample_ids=True)
    assert "sample_ids" not in plain(items)
    ids = with_ids(items)["sample_ids"]
    assert len(ids) == 2 and "first" in ids[0] and "second" in ids[1]


# --- issue 19 §5: files nested deeply, an image that is a number ----------------------------------------------------
DEEP = 100_000


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_training_data_nested_100000_deep_is_one_line_naming_the_file(make, suffix):
    text = "[" * DEEP + "]" * DEEP
    if suffix == ".jsonl":
        text = json.dumps(sample()) + "\n" + '{"id": ' + text + "}\n"
    with pytest.raises(ValueError, match=rf"data{suffix}{':2' if suffix == '.jsonl' else ''}: the JSON is nested too "
                                         r"deeply to read") as caught:
        make(text, suffix=suffix)
    assert "\n" not in str(caught.value) and caught.value.__suppress_context__


def test_a_question_file_nested_100000_deep_is_one_line_naming_the_file(tmp_path):
    from mung.eval import model_vqa_loader

    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": 1, "text": ' + "[" * DEEP + "]" * DEEP + "}\n")
    with pytest.raises(ValueError, match=r"q\.jsonl:1: the JSON is nested too deeply to read"):
        model_vqa_loader.main(["--model-path", str(tmp_path / "never-loaded"), "--question-file", str(questions),
                               "--answers-file", str(tmp_path / "a.jsonl")])


@pytest.mark.parametrize("image", [5, {"path": "good.png"}, ["good.png", 3]])
def test_a_sample_whose_image_is_not_a_path_is_a_bad_sample_naming_the_field(make, image):
    ds = make([sample(image=image, sid="num-img")])
    with pytest.raises(make.error, match=r"num-img.*'image' must be a path or a list of paths"):
        ds[0]
    skipping = make([sample(image=image, sid="num-img"), sample(sid="ok")], on_bad_sample="skip",
                    max_bad_sample_share=1.0)
    assert skipping[0]["sample_id"] == skipping[1]["sample_id"]  # the bad one is skipped to the good one
