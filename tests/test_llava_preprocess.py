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
    # As the original's preprocess_multimodal: any turn holding <image> gets it in front (a bare one stays bare).
    turns = normalise_image_tokens([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<image>"}], 1, "m2")
    assert [t["value"] for t in turns] == ["hi", "<image>"]


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


# --- labels token by token, as the original LLaVA supervises them -------------------------------------------------
# In the tiny world's tokenizer the v1 system prompt is BOS + 29 tokens; "▁USER" ":" follow at positions 30, 31.
# The original's preprocess_v1 masks, per round, the tokens of "...ASSISTANT: " minus 2 (BOS and the lone "▁" of the
# trailing space), so everything after the ":" of "ASSISTANT:" is supervised, up to and including "</s>". A reply
# starting with a digit or an unknown character begins with a lone "▁" token, which is thus supervised too.
# preprocess_plain masks the tokens of "<image>" (BOS, image) and supervises everything after them.
V1_LABEL_CASES = {
    "digit_first": (
        ["<image>\nHow many circles?", "3 circles"],
        46,
        [(42, "▁"), (43, "3"), (44, "▁circles"), (45, "</s>")],
    ),
    "punctuation_first_alone": (  # "«" is not in the vocabulary: lone "▁" then byte tokens
        ["<image>\nWhat colour?", "«red»"],
        51,
        [(44, "▁"), (45, "<0xC2>"), (46, "<0xAB>"), (47, "red"), (48, "<0xC2>"), (49, "<0xBB>"), (50, "</s>")],
    ),
    "punctuation_first_merged": (
        ["<image>\nWhat colour?", "(3) red"],
        49,
        [(44, "▁("), (45, "3"), (46, ")"), (47, "▁red"), (48, "</s>")],
    ),
    "letter_first": (
        ["<image>\nWhat colour?", "red"],
        46,
        [(44, "▁red"), (45, "</s>")],
    ),
    "two_turns_digits_then_letters": (
        ["<image>\nName the shapes.", "1. circle 2. square", "Which is red?", "the circle"],
        67,
        [(46, "▁"), (47, "1"), (48, "."), (49, "▁circle"), (50, "▁"), (51, "2"), (52, "."), (53, "▁square"),
         (54, "</s>"), (64, "▁the"), (65, "▁circle"), (66, "</s>")],
    ),
    "two_turns_letters_then_digit": (
        ["<image>\nWhat colour?", "red", "How many?", "3"],
        57,
        [(44, "▁red"), (45, "</s>"), (54, "▁"), (55, "3"), (56, "</s>")],
    ),
    "two_turns_text_only_punctuation": (
        ["What colour?", "«red»", "Which one?", "(3) red"],
        60,
        [(40, "▁"), (41, "<0xC2>"), (42, "<0xAB>"), (43, "red"), (44, "<0xC2>"), (45, "<0xBB>"), (46, "</s>"),
         (55, "▁("), (56, "3"), (57, ")"), (58, "▁red"), (59, "</s>")],
    ),
}
PLAIN_LABEL_CASES = {
    "digit_first": (["<image>\nDescribe.", "3 circles"], 6, [(2, "▁"), (3, "3"), (4, "▁circles"), (5, "\n")]),
    "punctuation_first_alone": (
        ["<image>\nDescribe.", "«red»"],
        9,
        [(2, "▁"), (3, "<0xC2>"), (4, "<0xAB>"), (5, "red"), (6, "<0xC2>"), (7, "<0xBB>"), (8, "\n")],
    ),
    "punctuation_first_merged": (
        ["<image>\nDescribe.", "(3) red"], 7, [(2, "▁("), (3, "3"), (4, ")"), (5, "▁red"), (6, "\n")],
    ),
    "letter_first": (
        ["<image>\nDescribe.", "a red circle"], 6, [(2, "▁a"), (3, "▁red"), (4, "▁circle"), (5, "\n")],
    ),
    # The original pretrains on two turns only; later captions (their human turns have no image, so render empty)
    # continue the text after the image, all supervised.
    "two_turns": (
        ["<image>\nDescribe.", "3 circles", "And now?", "1. circle"],
        10,
        [(2, "▁"), (3, "3"), (4, "▁circles"), (5, "\n"), (6, "1"), (7, "."), (8, "▁circle"), (9, "\n")],
    ),
}


def supervised_positions(tokenizer, template, values):
    turns = [{"from": "human" if k % 2 == 0 else "gpt", "value": v} for k, v in enumerate(values)]
    n_images = sum(v.count("<image>") for v in values)
    conv = build_conversation(normalise_image_tokens(turns, n_images, "c"), conv_templates[template], "c")
    sample = preprocess(conv, tokenizer, "c")
    assert not sample.mismatch
    for i, label in zip(sample.input_ids, sample.labels):
        assert label in (IGNORE_INDEX, i)
    pieces = [(j, tokenizer.convert_ids_to_tokens(i)) for j, (i, l) in enumerate(zip(sample.input_ids, sample.labels))
              if l != IGNORE_INDEX]
    return sample, pieces


@pytest.mark.parametrize("case", sorted(V1_LABEL_CASES))
@pytest.mark.parametrize("template", ["v1", "vicuna_v1"])
def test_v1_supervises_what_the_original_supervises(tokenizer, template, case):
    values, length, expected = V1_LABEL_CASES[case]
    sample, pieces = supervised_positions(tokenizer, template, values)
    assert len(sample.input_ids) == length
    assert pieces == expected
    # The token before each supervised run is the ":" of "ASSISTANT:".
    starts = [j for j, _ in expected if j - 1 not in {p for p, _ in expected}]
    assert [tokenizer.convert_ids_to_tokens(sample.input_ids[j - 2 : j]) for j in starts] == [["▁ASSISTANT", ":"]] * len(starts)


@pytest.mark.parametrize("case", sorted(PLAIN_LABEL_CASES))
def test_plain_supervises_everything_after_the_image(tokenizer, case):
    values, length, expected = PLAIN_LABEL_CASES[case]
    sample, pieces = supervised_positions(tokenizer, "plain", values)
    assert sample.input_ids[:2] == [tokenizer.bos_token_id, IMAGE_TOKEN_INDEX]
    assert len(sample.input_ids) == length
    assert pieces == expected


def test_training_drops_the_v0_example_turns(tokenizer):
    conv = build_conversation(normalise_image_tokens(TURNS[:2], 1, "v0"), conv_templates["v0"], "v0")
    assert conv.get_prompt() == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions.###Human: <image>\nWhat colour is the shape?###"
        "Assistant: red###"
    )
    assert supervised_text(tokenizer, *labelled_ids(tokenizer, conv)) == ["red###"]


def labelled_ids(tokenizer, conv):
    sample = preprocess(conv, tokenizer, "x")
    return sample.input_ids, sample.labels


# --- <image> in a later turn -------------------------------------------------------------------------------------
LATER_IMAGE_TURNS = [
    {"from": "human", "value": "What colour is the shape?"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "Which shape is it? <image>"},
    {"from": "gpt", "value": "circle"},
]


def test_image_in_a_later_turn_moves_to_the_front_of_that_turn(tokenizer):
    turns = normalise_image_tokens(LATER_IMAGE_TURNS, 1, "late")
    assert [t["value"] for t in turns] == ["What colour is the shape?", "red", "<image>\nWhich shape is it?", "circle"]
    conv = build_conversation(turns, conv_templates["v1"], "late")
    assert conv.get_prompt() == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: What colour is the shape? ASSISTANT: red</s>"
        "USER: <image>\nWhich shape is it? ASSISTANT: circle</s>"
    )
    sample, pieces = supervised_positions(tokenizer, "v1", [t["value"] for t in LATER_IMAGE_TURNS])
    assert len(sample.input_ids) == 61
    assert [j for j, i in enumerate(sample.input_ids) if i == IMAGE_TOKEN_INDEX] == [49]
    assert pieces == [(43, "▁red"), (44, "</s>"), (59, "▁circle"), (60, "</s>")]


@pytest.mark.parametrize(
    "value, start_end, mmtag, expected",
    [
        ("<image>", False, False, "<image>"),
        ("Which shape? <image>", True, False, "<im_start><image><im_end>\nWhich shape?"),
        ("Which shape? <image>", False, True, "<Image><image></Image>\nWhich shape?"),
        ("Which shape? <image>", True, True, "<Image><im_start><image><im_end></Image>\nWhich shape?"),
    ],
)
def test_image_token_forms_follow_the_original(value, start_end, mmtag, expected):
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
             {"from": "human", "value": value}, {"from": "gpt", "value": "circle"}]
    out = normalise_image_tokens(turns, 1, "form", mm_use_im_start_end=start_end, mmtag=mmtag)
    assert [t["value"] for t in out] == ["Hi", "Hello", expected, "circle"]


def test_image_count_is_checked_over_all_turns():
    turns = [{"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "x"},
             {"from": "human", "value": "<image>\nAnd?"}, {"from": "gpt", "value": "y"}]
    with pytest.raises(ValueError, match=r"Sample cnt: 2 <image> tokens but 1 image\(s\); use one <image> per image"):
        normalise_image_tokens(turns, 1, "cnt")
    assert [t["value"] for t in normalise_image_tokens(turns, 2, "cnt")][::2] == ["<image>\nHi", "<image>\nAnd?"]


def test_training_forward_with_image_in_a_later_turn(world, tokenizer, tmp_path):
    """The batch's loss equals the LLM's loss on the sequence spliced by hand: image features at the placeholder
    of the third turn, -100 for them."""
    from llava_builders import tiny_llava_config
    from llava_noise.model import LlavaLlamaForCausalLM
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlavaLlamaForCausalLM.from_pretrained(world["llava_llm"], config=tiny_llava_config(world)).eval()
    tower = model.get_vision_tower()
    tower.load_model()
    with open(world["llava_train_json"]) as handle:
        image = next(r for r in json.load(handle) if "image" in r)["image"]
    path = tmp_path / "late.json"
    path.write_text(json.dumps([{"id": "late-1", "image": image, "conversations": LATER_IMAGE_TURNS}]))
    data = LazySupervisedDataset(str(path), tokenizer, "v1", world["image_folder"], tower.image_processor, "pad",
                                 tower.num_patches, 512, on_bad_sample="raise")
    batch = DataCollatorForSupervisedDataset(tokenizer)([data[0]])
    loss = model(**batch).loss
    loss.backward()
    assert model.get_model().mm_projector[0].weight.grad.abs().sum() > 0

    ids, labels = batch["input_ids"][0], batch["labels"][0]
    place = 49
    assert ids[place] == IMAGE_TOKEN_INDEX
    with torch.no_grad():
        features = model.encode_images(batch["images"])[0]
        embeds = model.get_model().embed_tokens(ids.clamp(min=0))
        spliced = torch.cat([embeds[:place], features, embeds[place + 1 :]])
        spliced_labels = torch.cat([labels[:place], torch.full((features.shape[0],), IGNORE_INDEX), labels[place + 1 :]])
        reference = LlamaForCausalLM.forward(model, inputs_embeds=spliced[None], labels=spliced_labels[None]).loss
    torch.testing.assert_close(loss.detach(), reference)
