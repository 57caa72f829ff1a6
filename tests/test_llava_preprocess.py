"""LLaVA preprocessing: labels per template token by token, image-token placement, mismatch reporting, batching."""

import json
import logging

import pytest
import torch
from transformers import AutoTokenizer

from llava_noise.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava_noise.conversation import Conversation, SeparatorStyle, conv_templates
from llava_noise.mm_utils import tokenizer_image_token
from llava_noise.train.data import (
    DataCollatorForSupervisedDataset,
    LazySupervisedDataset,
    build_conversation,
    normalise_image_tokens,
    preprocess,
)
from llava_noise.train.trainer import modality_grouped_indices

TURNS = [
    {"from": "human", "value": "What colour is the shape?\n<image>"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "Which shape is it?"},
    {"from": "gpt", "value": "a small circle"},
]


@pytest.fixture(scope="module")
def tokenizer(world):
    tok = AutoTokenizer.from_pretrained(world["llava_llm"])
    tok.pad_token = tok.unk_token
    return tok


def expected_tokens(tokenizer, pieces):
    """Reference: tokenise each rendered piece on its own and label it by hand (BOS first, -200 for <image>)."""
    ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]
    for text, supervised in pieces:
        for k, chunk in enumerate(text.split("<image>")):
            if k:
                ids.append(IMAGE_TOKEN_INDEX)
                labels.append(IGNORE_INDEX)
            if chunk:
                part = tokenizer(chunk, add_special_tokens=False)["input_ids"]
                ids += part
                labels += part if supervised else [IGNORE_INDEX] * len(part)
    return ids, labels


def supervised_text(tokenizer, ids, labels):
    runs, current = [], []
    for i, l in zip(ids, labels):
        if l != IGNORE_INDEX:
            current.append(i)
        elif current:
            runs.append(tokenizer.decode(current).strip())
            current = []
    if current:
        runs.append(tokenizer.decode(current).strip())
    return runs


def labelled(tokenizer, template):
    conv = build_conversation(normalise_image_tokens(TURNS, 1, "t0"), conv_templates[template], "t0")
    return conv, preprocess(conv, tokenizer, "t0")


def test_v1_labels_supervise_each_reply_and_its_eos(tokenizer):
    conv, sample = labelled(tokenizer, "v1")
    assert not sample.mismatch
    assert supervised_text(tokenizer, sample.input_ids, sample.labels) == ["red</s>", "a small circle</s>"]
    pieces = [("".join(t for t, _ in conv.render_pieces()), False)]
    ref_ids, _ = expected_tokens(tokenizer, pieces)
    assert sample.input_ids == ref_ids  # same ids as inference's tokenizer_image_token
    assert sample.input_ids == tokenizer_image_token(conv.get_prompt(), tokenizer)
    eos = tokenizer.eos_token_id
    assert [i for i, l in zip(sample.input_ids, sample.labels) if l == eos] == [eos, eos]


def test_v1_labels_token_by_token(tokenizer):
    conv, sample = labelled(tokenizer, "v1")
    for (i, label) in zip(sample.input_ids, sample.labels):
        assert label in (IGNORE_INDEX, i)
    # Every reply's own tokens (tokenised alone) appear, in order, as the supervised tokens.
    supervised = [i for i, l in zip(sample.input_ids, sample.labels) if l != IGNORE_INDEX]
    reply_tokens = []
    for reply in ("red", "a small circle"):
        reply_tokens += tokenizer(" " + reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(supervised).replace(" ", "") == tokenizer.decode(reply_tokens).replace(" ", "")
    assert sample.input_ids[0] == tokenizer.bos_token_id and sample.labels[0] == IGNORE_INDEX
    assert sample.input_ids.count(IMAGE_TOKEN_INDEX) == 1
    assert sample.labels[sample.input_ids.index(IMAGE_TOKEN_INDEX)] == IGNORE_INDEX


def test_plain_labels_supervise_caption_and_newline_only(tokenizer):
    turns = [{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": "a red circle"}]
    conv = build_conversation(normalise_image_tokens(turns, 1, "p0"), conv_templates["plain"], "p0")
    sample = preprocess(conv, tokenizer, "p0")
    assert conv.get_prompt() == "<image>a red circle\n"
    assert sample.input_ids[:2] == [tokenizer.bos_token_id, IMAGE_TOKEN_INDEX]
    assert sample.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert all(l == i for i, l in zip(sample.input_ids[2:], sample.labels[2:]))
    assert tokenizer.decode(sample.input_ids[2:]) == tokenizer.decode(tokenizer("a red circle\n", add_special_tokens=False)["input_ids"])


def test_llama_2_labels_supervise_replies_and_eos(tokenizer):
    conv, sample = labelled(tokenizer, "llava_llama_2")
    prompt = conv.get_prompt()
    assert prompt.startswith("[INST] <<SYS>>\n") and "[/INST] red </s><s>[INST] Which shape is it? [/INST]" in prompt
    assert not sample.mismatch
    assert supervised_text(tokenizer, sample.input_ids, sample.labels) == ["red </s>", "a small circle </s>"]
    assert "[INST]" not in tokenizer.decode([i for i, l in zip(sample.input_ids, sample.labels) if l != IGNORE_INDEX])


def test_image_token_anywhere_in_first_turn_moves_to_front():
    turns = normalise_image_tokens([{"from": "human", "value": "Look: <image> what is it?"}, {"from": "gpt", "value": "x"}], 1, "m")
    assert turns[0]["value"] == "<image>\nLook:  what is it?"
    with pytest.raises(ValueError, match="Sample m2: <image> in turn 1"):
        normalise_image_tokens([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<image>"}], 1, "m2")


def test_tokenisation_mismatch_is_logged_counted_and_unsupervised(tokenizer, caplog):
    # An assistant role that ends mid-word: the reply "d" fuses with the role's "re" into one token.
    template = Conversation(system="", roles=("USER", "re"), messages=[], sep_style=SeparatorStyle.MPT, sep="</s>")
    conv = template.copy()
    conv.append_message("USER", "colour")
    conv.append_message("re", "d")
    with caplog.at_level(logging.WARNING):
        sample = preprocess(conv, tokenizer, "bad-sample-7")
    assert sample.mismatch
    assert all(l == IGNORE_INDEX for l in sample.labels)
    assert "bad-sample-7" in caplog.text


def test_dataset_counts_mismatches_and_adds_dummy_image_for_text_only(world, tokenizer, tmp_path):
    from llava_noise.model.multimodal_encoder import CLIPVisionTower

    tower = CLIPVisionTower(world["llava_vision_tower"])
    tower.load_model()
    with open(world["llava_train_json"]) as handle:
        records = json.load(handle)
    image_sample = next(r for r in records if "image" in r)
    text_sample = next(r for r in records if "image" not in r)
    path = tmp_path / "data.json"
    path.write_text(json.dumps([image_sample, text_sample]))
    data = LazySupervisedDataset(str(path), tokenizer, "v1", world["image_folder"], tower.image_processor, "pad", tower.num_patches, 512)
    items = [data[0], data[1]]
    assert len(items[0]["images"]) == 1 and len(items[1]["images"]) == 1
    assert torch.count_nonzero(items[1]["images"][0]) == 0
    assert data.modality_lengths[0] > 0 > data.modality_lengths[1]
    assert data.mismatches == 0
    batch = DataCollatorForSupervisedDataset(tokenizer)(items)
    assert batch["images"].shape[0] == 2
    lengths = [len(x["input_ids"]) for x in items]
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_collator_mask_follows_lengths_even_when_pad_id_is_a_real_token(tokenizer):
    pad = tokenizer.pad_token_id
    items = [
        {"input_ids": torch.tensor([1, pad, 5]), "labels": torch.tensor([-100, pad, 5]), "images": []},
        {"input_ids": torch.tensor([1, 6]), "labels": torch.tensor([-100, 6]), "images": []},
    ]
    batch = DataCollatorForSupervisedDataset(tokenizer)(items)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert "images" not in batch


def test_group_by_modality_length_never_mixes_modalities():
    lengths = [10, -3, 7, -8, 12, 5, -2, 9, -6, 4, 11, -1, 3, 8]
    order = modality_grouped_indices(lengths, megabatch_size=4, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    full = (len([n for n in lengths if n > 0]) // 4 + len([n for n in lengths if n <= 0]) // 4) * 4
    for start in range(0, full, 4):
        signs = {lengths[i] > 0 for i in order[start:start + 4]}
        assert len(signs) == 1
