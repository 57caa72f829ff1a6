"""Training data of the generic backbone: labels on the assistant turns (and their end of turn) for every family's chat
template, multi-turn, multi-image and text-only records, and bad records named with their field."""

import json

import pytest
import torch
from transformers import AutoProcessor

from mung.bad_samples import BadSampleCause, BadSampleError
from noise_generator import IGNORE_INDEX
from vlm_helpers import FAMILY_NAMES, family_folder
from vlm_noise.data import ConversationCollator, read_sample
from vlm_noise.data.labels import align_labels, labels_for_tokens

# What each family's template writes after an assistant message (written by hand from the templates).
END_OF_TURN = {
    "llava": "</s>", "llava_next": "</s>", "mistral3": "</s>", "paligemma": "<eos>", "gemma3": "<end_of_turn>",
    "idefics3": "<end_of_utterance>", "smolvlm": "<end_of_utterance>", "llava_onevision": "<|im_end|>",
    "internvl": "<|im_end|>", "qwen2_vl": "<|im_end|>", "qwen3_vl": "<|im_end|>", "qwen2_5_vl": "<|im_end|>",
}
KINDS = ("colour", "multi_turn", "text", "multi_image")


@pytest.fixture(scope="module")
def records(tiny_world):
    rows = json.load(open(tiny_world["qwen_train_json"]))
    return {kind: next(r for r in rows if r["family"] == kind) for kind in KINDS}


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_labels_are_the_assistant_turns_and_their_end_of_turn(name, vlm_families, records, tiny_world):
    processor = AutoProcessor.from_pretrained(family_folder(vlm_families, name))
    kinds = [k for k in KINDS if not (name == "paligemma" and k == "text")]  # PaliGemma needs an image
    samples = [read_sample(records[k], tiny_world["image_folder"], k) for k in kinds]
    batch = ConversationCollator(processor)(samples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ((labels == ids) | (labels == IGNORE_INDEX)).all() and (labels[mask == 0] == IGNORE_INDEX).all()
    for row, kind in enumerate(kinds):
        supervised = processor.tokenizer.decode(labels[row][labels[row] != IGNORE_INDEX]).replace(" ", "")
        answers = [t["value"] for t in records[kind]["conversations"] if t["from"] == "gpt"]
        assert supervised == "".join(answer + END_OF_TURN[name] for answer in answers), (kind, supervised)
    assert "pixel_values" in batch


def test_labels_for_tokens_marks_overlapping_tokens_and_the_next_one():
    # "AB CD<e>": tokens "AB" (0-2), " CD" (2-5), "<e>" (5-8), "\n" (8-9); the answer is "CD" at 3-5.
    offsets, ids = [(0, 2), (2, 5), (5, 8), (8, 9)], [10, 11, 12, 13]
    assert labels_for_tokens(offsets, ids, [(3, 5)]) == [IGNORE_INDEX, 11, 12, IGNORE_INDEX]


def test_align_labels_carries_labels_over_image_expansions():
    text_ids, text_labels = [1, 9, 2, 3, 4], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 3, 4]
    model_ids = [1, 7, 9, 9, 9, 7, 2, 3, 4]  # the image marker 9 expanded to 7 9 9 9 7
    assert align_labels(text_ids, text_labels, model_ids, "s") == [IGNORE_INDEX] * 7 + [3, 4]
    with pytest.raises(BadSampleError, match="s: the processor's tokens"):
        align_labels(text_ids, text_labels, [1, 7, 9, 7, 2, 5, 4], "s")


def test_a_record_with_images_and_no_placeholder_gets_them_first(records, tiny_world):
    record = dict(records["colour"])
    record["conversations"] = [{"from": "human", "value": "What color?"}, {"from": "gpt", "value": "red"}]
    sample = read_sample(record, tiny_world["image_folder"], "r")
    assert sample.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "\nWhat color?"}]
    assert len(sample.images) == 1


@pytest.mark.parametrize("change, message, cause", [
    ({"conversations": []}, "sample 7: 'conversations' must be a non-empty list", BadSampleCause.FORMAT),
    ({"conversations": [{"from": "robot", "value": "x"}]}, r"sample 7, conversations\[0\]", BadSampleCause.FORMAT),
    ({"conversations": [{"from": "human", "value": "hi"}]}, "sample 7: no assistant", BadSampleCause.FORMAT),
    ({"image": ["a.png", "b.png"]}, r"sample 7: 1 <image> placeholder\(s\) in the human turns for 2",
     BadSampleCause.FORMAT),
    ({"image": "nowhere.png"}, "sample 7: .*nowhere.png", BadSampleCause.UNREADABLE_IMAGE),
])
def test_bad_records_name_the_sample_and_the_field(records, tiny_world, change, message, cause):
    with pytest.raises(BadSampleError, match=message) as caught:
        read_sample({**records["colour"], **change}, tiny_world["image_folder"], "sample 7")
    assert caught.value.cause == cause


def test_samples_longer_than_max_length_are_refused(vlm_families, records, tiny_world):
    processor = AutoProcessor.from_pretrained(vlm_families["gemma3"])
    sample = read_sample(records["colour"], tiny_world["image_folder"], "sample 3")
    with pytest.raises(BadSampleError, match="sample 3: .* more than max_length=8") as caught:
        ConversationCollator(processor, max_length=8)([sample])
    assert caught.value.cause == BadSampleCause.TOO_LONG
    assert torch.is_tensor(ConversationCollator(processor, max_length=4096)([sample])["labels"])


def test_paligemma_learns_its_answer_as_a_causal_suffix(vlm_families, records, tiny_world):
    """PaliGemma is prefix-LM: the prompt attends bidirectionally, the answer must be causal (token_type_ids 1 from
    the answer on, as its processor's ``suffix=`` encodes it), or every answer token would see the tokens it is
    trained to predict. Changing the last answer token must leave the logits of every earlier position unchanged."""
    from transformers import AutoModelForImageTextToText

    folder = family_folder(vlm_families, "paligemma")
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    record = dict(records["colour"])
    batch = ConversationCollator(processor)([read_sample(record, tiny_world["image_folder"], "a")])
    labels, types = batch["labels"][0], batch["token_type_ids"][0]
    answer = (labels != IGNORE_INDEX).nonzero().flatten()
    assert types[: answer[0]].eq(0).all() and types[answer[0]:].eq(1).all()
    changed = {k: v.clone() for k, v in batch.items()}
    last = int(answer[-1])
    words = [processor.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("blue", "red")]
    changed["input_ids"][0, last] = next(w for w in words if w != int(batch["input_ids"][0, last]))
    with torch.no_grad():
        before, after = model(**batch).logits, model(**changed).logits
    assert torch.equal(before[0, :last], after[0, :last])
    assert not torch.equal(before[0, last], after[0, last])


def test_a_converted_mmpr_item_is_one_question_and_its_answer(records, tiny_world):
    record = {"image": records["colour"]["image"], "question": "What color?", "answer": 3}
    sample = read_sample(record, tiny_world["image_folder"], "m")
    assert [m["role"] for m in sample.messages] == ["user", "assistant"]
    assert sample.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "\nWhat color?"}]
    assert sample.messages[1]["content"] == [{"type": "text", "text": "3"}]
    with pytest.raises(BadSampleError, match="m: 'question' must be text"):
        read_sample({"question": ["x"], "answer": "y"}, tiny_world["image_folder"], "m")
