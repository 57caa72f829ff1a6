"""Qwen2.5-VL training data: token-by-token labels against the stock chat template, truncation, collation, MMPR."""

import json

import pytest
import torch
from transformers import AutoProcessor

from qwen_noise.data import BadSample, QwenDataCollator, QwenSupervisedDataset
from qwen_noise.data.convert_mmpr import convert

IGNORE = -100


@pytest.fixture(scope="module")
def processor(tiny_world):
    return AutoProcessor.from_pretrained(tiny_world["qwen_model"])


def write_records(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def make_dataset(tmp_path, tiny_world, processor, records, **kwargs):
    return QwenSupervisedDataset(
        write_records(tmp_path, records), processor, image_folder=tiny_world["image_folder"], **kwargs
    )


def stock_tokens(processor, tiny_world, messages, images):
    """Reference ids from transformers' own chat template + processor (independent of our rendering)."""
    text = processor.apply_chat_template(messages, tokenize=False)
    if images:
        from PIL import Image

        pil = [Image.open(f"{tiny_world['image_folder']}/{p}") for p in images]
        return processor(text=[text], images=pil, return_tensors="pt")["input_ids"][0]
    return processor(text=[text], return_tensors="pt")["input_ids"][0]


def supervised_text(processor, example):
    ids = example["input_ids"][example["labels"] != IGNORE]
    return processor.tokenizer.decode(ids)


def expected_labels(processor, input_ids, answers):
    """By hand: every assistant answer and the <|im_end|> after it, found by scanning for the assistant header."""
    tok = processor.tokenizer
    header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = input_ids.tolist()
    labels = [IGNORE] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i : i + len(header)] == header:
            j = i + len(header)
            while ids[j] != im_end:
                labels[j] = ids[j]
                j += 1
            labels[j] = im_end
            i = j
        i += 1
    return torch.tensor(labels)


def test_single_image_sample_matches_stock_template_and_labels(tmp_path, tiny_world, processor):
    record = {"image": "train/00000.png", "conversations": [
        {"from": "human", "value": "<image>What colour is it?"}, {"from": "gpt", "value": "red"}]}
    example = make_dataset(tmp_path, tiny_world, processor, [record])[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    assert torch.equal(example["input_ids"], stock_tokens(processor, tiny_world, messages, ["train/00000.png"]))
    assert torch.equal(example["labels"], expected_labels(processor, example["input_ids"], ["red"]))
    assert supervised_text(processor, example) == "red<|im_end|>"
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(example["mm_token_type_ids"].bool(), example["input_ids"] == image_token)
    assert int((example["input_ids"] == image_token).sum()) == int(example["image_grid_thw"].prod() // 4)


def test_multi_image_sample_keeps_every_image_in_order(tmp_path, tiny_world, processor):
    record = {"image": ["train/00001.png", "train/00002.png"], "question": "<image>\n<image>\nWhich is red?",
              "answer": "first"}
    example = make_dataset(tmp_path, tiny_world, processor, [record])[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which is red?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "first"}]}]
    assert torch.equal(example["input_ids"], stock_tokens(processor, tiny_world, messages, record["image"]))
    assert example["image_grid_thw"].shape[0] == 2
    assert supervised_text(processor, example) == "first<|im_end|>"


def test_multi_turn_sample_supervises_every_assistant_turn(tmp_path, tiny_world, processor):
    record = {"image": "train/00003.png", "conversations": [
        {"from": "human", "value": "<image>What shape?"}, {"from": "gpt", "value": "circle"},
        {"from": "human", "value": "What colour?"}, {"from": "gpt", "value": "blue"}]}
    example = make_dataset(tmp_path, tiny_world, processor, [record])[0]
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "circle"}]},
        {"role": "user", "content": [{"type": "text", "text": "What colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "blue"}]},
    ]
    assert torch.equal(example["input_ids"], stock_tokens(processor, tiny_world, messages, ["train/00003.png"]))
    assert torch.equal(example["labels"], expected_labels(processor, example["input_ids"], ["circle", "blue"]))
    assert supervised_text(processor, example) == "circle<|im_end|>blue<|im_end|>"


def test_text_only_sample_has_no_image_tensors(tmp_path, tiny_world, processor):
    record = {"conversations": [{"from": "human", "value": "Say yes."}, {"from": "gpt", "value": "yes"}]}
    example = make_dataset(tmp_path, tiny_world, processor, [record])[0]
    messages = [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}]
    assert torch.equal(example["input_ids"], stock_tokens(processor, tiny_world, messages, []))
    assert "pixel_values" not in example and not example["mm_token_type_ids"].any()
    assert supervised_text(processor, example) == "yes<|im_end|>"


IMAGE_RECORD = {"image": "train/00000.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat colour is the object in the picture?"},
    {"from": "gpt", "value": "red and a long explanation"}]}


def lengths(tmp_path, tiny_world, processor):
    example = make_dataset(tmp_path, tiny_world, processor, [IMAGE_RECORD])[0]
    ids, labels = example["input_ids"], example["labels"]
    image_end = int((ids == processor.tokenizer.convert_tokens_to_ids("<|vision_end|>")).nonzero()[-1])
    first_answer = int((labels != IGNORE).nonzero()[0])
    return len(ids), image_end, first_answer


def test_truncation_that_would_split_an_image_raises_naming_the_sample(tmp_path, tiny_world, processor):
    _, image_end, _ = lengths(tmp_path, tiny_world, processor)
    records = [IMAGE_RECORD, IMAGE_RECORD]
    ds = make_dataset(tmp_path, tiny_world, processor, records, model_max_length=image_end, on_bad_sample="raise")
    with pytest.raises(BadSample, match=r"sample 1: .*split or drop image tokens"):
        ds[1]


def test_truncation_that_leaves_no_answer_raises(tmp_path, tiny_world, processor):
    _, _, first_answer = lengths(tmp_path, tiny_world, processor)
    ds = make_dataset(tmp_path, tiny_world, processor, [IMAGE_RECORD], model_max_length=first_answer,
                      on_bad_sample="raise")
    with pytest.raises(BadSample, match="no supervised"):
        ds[0]


def test_truncation_inside_the_answer_keeps_the_answer_start(tmp_path, tiny_world, processor):
    total, _, first_answer = lengths(tmp_path, tiny_world, processor)
    ds = make_dataset(tmp_path, tiny_world, processor, [IMAGE_RECORD], model_max_length=first_answer + 2)
    example = ds[0]
    assert len(example["input_ids"]) == first_answer + 2 < total
    assert int((example["labels"] != IGNORE).sum()) == 2


def test_bad_samples_are_skipped_and_counted(tmp_path, tiny_world, processor):
    short = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "yes"}]}
    _, image_end, _ = lengths(tmp_path, tiny_world, processor)
    ds = make_dataset(tmp_path, tiny_world, processor, [IMAGE_RECORD, short], model_max_length=image_end,
                      max_bad_sample_share=1.0)  # 1 of 2 bad: no stop here
    example = ds[0]  # the image sample is bad at this length: the next good one stands in
    assert "pixel_values" not in example and supervised_text(processor, example) == "yes<|im_end|>"
    assert ds.skipped == 1


def test_placeholder_count_must_match_images(tmp_path, tiny_world, processor):
    record = {"image": ["train/00000.png", "train/00001.png"],
              "conversations": [{"from": "human", "value": "<image> what?"}, {"from": "gpt", "value": "red"}]}
    ds = make_dataset(tmp_path, tiny_world, processor, [record], on_bad_sample="raise")
    with pytest.raises(BadSample, match="1 <image> placeholders for 2 images"):
        ds[0]


def test_missing_image_names_the_file(tmp_path, tiny_world, processor):
    record = {"image": "nope.png", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "red"}]}
    ds = make_dataset(tmp_path, tiny_world, processor, [record], on_bad_sample="raise")
    with pytest.raises(BadSample, match="nope.png"):
        ds[0]


def test_max_pixels_bounds_image_tokens(tmp_path, tiny_world, processor):
    record = {"image": "train/00000.png", "question": "what?", "answer": "red"}
    small = make_dataset(tmp_path, tiny_world, processor, [record], max_pixels=56 * 56)[0]
    full = make_dataset(tmp_path, tiny_world, processor, [record])[0]
    assert small["image_grid_thw"].tolist() == [[1, 4, 4]]  # 56 x 56 px -> 4 x 4 patches -> 4 tokens
    assert full["image_grid_thw"].tolist() == [[1, 8, 8]]


def test_collator_pads_right_and_keeps_rope_inputs(tmp_path, tiny_world, processor):
    records = [IMAGE_RECORD, {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "yes"}]},
               {"image": ["train/00001.png", "train/00002.png"], "question": "which?", "answer": "first"}]
    ds = make_dataset(tmp_path, tiny_world, processor, records)
    examples = [ds[i] for i in range(3)]
    pad = processor.tokenizer.pad_token_id
    batch = QwenDataCollator(pad_token_id=pad)(examples)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert torch.equal(batch["input_ids"][row, :n], example["input_ids"])
        assert (batch["input_ids"][row, n:] == pad).all() and (batch["labels"][row, n:] == IGNORE).all()
        assert batch["attention_mask"][row].sum() == n and torch.equal(batch["mm_token_type_ids"][row, :n], example["mm_token_type_ids"])
    assert torch.equal(batch["image_grid_thw"], torch.cat([examples[0]["image_grid_thw"], examples[2]["image_grid_thw"]]))
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(-1).sum())


def test_mmpr_conversion_applies_repeat_time_and_keeps_all_images(tmp_path, tiny_world):
    meta = json.loads(open(tiny_world["mmpr_meta"]).read())
    out = tmp_path / "mmpr.jsonl"
    counts = convert(tiny_world["mmpr_meta"], str(out), seed=0)
    for name, source in meta.items():
        assert counts[name] == round(source["length"] * source["repeat_time"])
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(items) == sum(counts.values())
    assert all("<image>" not in item["question"] for item in items)
    multi = [item for item in items if len(item.get("image", [])) > 1]
    assert multi and all(json.dumps(item["image"]).count(".png") == 2 for item in multi)
    assert convert(tiny_world["mmpr_meta"], str(tmp_path / "again.jsonl"), seed=0) == counts
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()  # seeded


def fake_mmpr(tmp_path, repeat_times=(0.5, 1, 2.5), rows=10):
    """meta.json with one source per repeat_time, ``rows`` items each; item i of source s asks "s/i"."""
    meta = {}
    for s, repeat_time in enumerate(repeat_times):
        name = f"source{s}"
        lines = [json.dumps({"image": f"{name}/{i}.png", "question": f"<image>\n{name}/{i}", "chosen": "yes",
                             "rejected": "no"}) for i in range(rows)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        meta[name] = {"root": "images", "annotation": f"{name}.jsonl", "repeat_time": repeat_time, "length": rows}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return tmp_path / "meta.json"


def multiplicities(out_path) -> dict:
    """{source: sorted list of how often each of its distinct items was written}."""
    from collections import Counter

    seen = Counter(json.loads(line)["question"] for line in out_path.read_text().splitlines())
    by_source = {}
    for question, count in seen.items():
        by_source.setdefault(question.split("/")[0], []).append(count)
    return {name: sorted(counts) for name, counts in by_source.items()}


@pytest.mark.parametrize(
    "rule, expected",
    [
        # MMPR/InternVL: repeat_time 0.5 keeps 5 of 10; 1 keeps all; 2.5 = 2 whole copies + 5 more items.
        ("internvl", {"source0": [1] * 5, "source1": [1] * 10, "source2": [2] * 5 + [3] * 5}),
        # The authors' MMPR_shuffle.py: 0.5 -> int(10 * 0.5) = 5 items, x10; 1 as is; 2.5 -> int(2.5) * 10 = 20 copies.
        ("authors", {"source0": [10] * 5, "source1": [1] * 10, "source2": [20] * 10}),
    ],
)
def test_mmpr_repeat_rules_give_the_hand_computed_counts_per_source(tmp_path, rule, expected):
    meta = fake_mmpr(tmp_path)
    out = tmp_path / "mix.jsonl"
    counts = convert(str(meta), str(out), seed=0, repeat_rule=rule)
    assert counts == {name: sum(c) for name, c in expected.items()}
    assert multiplicities(out) == expected


def test_mmpr_repeat_rule_is_a_cli_option_and_bad_values_are_refused(tmp_path):
    import subprocess
    import sys

    meta = fake_mmpr(tmp_path)
    run = lambda *extra: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "qwen_noise.data.convert_mmpr", "--meta", str(meta), "--out", str(tmp_path / "o.jsonl"),
         *extra], capture_output=True, text=True,
    )
    done = run("--repeat-rule", "authors")
    assert done.returncode == 0, done.stderr
    assert "total: 260" in done.stdout  # 50 + 10 + 200
    refused = run("--repeat-rule", "paper")
    assert refused.returncode != 0 and "internvl" in refused.stderr and "authors" in refused.stderr
    with pytest.raises(ValueError, match="repeat_rule 'paper'.*internvl, authors"):
        convert(str(meta), str(tmp_path / "x.jsonl"), repeat_rule="paper")
