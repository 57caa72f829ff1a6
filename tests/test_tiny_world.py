"""The tiny world: determinism, formats, loadability through the real transformers classes, and answers that
follow from the rendered images."""

import hashlib
import json
import os
import re
import shutil

import pytest
import sentencepiece as spm
import torch
from PIL import Image
from safetensors.torch import load_file

import tiny_world as tw
from tiny_world.vocabulary import COLOURS, COUNT_WORDS

QUESTION_FILES = ("eval_questions", "shift_eval_questions")
MODEL_KEYS = ("llava_llm", "llava_vision_tower", "qwen_model")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tree_digest(root, skip_suffix=".safetensors"):
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(skip_suffix):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    digests[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def model_tensors(world):
    return {key: load_file(os.path.join(world[key], "model.safetensors")) for key in MODEL_KEYS}


def world_root(world):
    return os.path.dirname(world["image_folder"])


def expected_answer(question, scene):
    """The answer worked out from the scene description alone, independently of the builder's question code."""
    shapes = scene["shapes"]
    question = question.split("\n")[0]
    if question == "What color is the shape?":
        (only,) = shapes
        return only["colour"]
    if question == "What shape is shown?":
        (only,) = shapes
        return only["shape"]
    if m := re.fullmatch(r"How many (\w+)s are there\?", question):
        return COUNT_WORDS[sum(s["shape"] == m[1] for s in shapes) - 1]
    if m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", question):
        return "yes" if any((s["colour"], s["shape"]) == (m[1], m[2]) for s in shapes) else "no"
    if m := re.fullmatch(r"Is the (\w+) on the left or the right\?", question):
        (only,) = [s for s in shapes if s["shape"] == m[1]]
        assert abs(only["x"] - 56) >= 8, f"{question} is ambiguous: the {m[1]} is near the middle"
        return "left" if only["x"] < 56 else "right"
    raise AssertionError(f"unexpected question {question!r}")


# --- building ---------------------------------------------------------------------------------------------------


def test_manifest_has_every_key_and_existing_absolute_paths(tiny_world):
    for key in tw.PATH_KEYS:
        assert os.path.isabs(tiny_world[key]) and os.path.exists(tiny_world[key]), key
    assert tiny_world["preset"] == "tiny" and tiny_world["seed"] == 0 and tiny_world["version"] == tw.BUILDER_VERSION
    assert tiny_world["families"] == ["colour", "shape", "count", "yesno", "position"]
    assert tiny_world["chance"] == {"colour": 1 / 6, "shape": 1 / 3, "count": 1 / 4, "yesno": 1 / 2, "position": 1 / 2}
    assert set(tiny_world["answer_words"]) >= {"red", "circle", "four", "yes", "left", "first"}
    counts = tiny_world["counts"]
    assert counts["train"] == len(read_json(tiny_world["llava_train_json"])) == 2000
    assert counts["shift_train"] == len(read_json(tiny_world["llava_shift_train_json"])) == 1000
    assert counts["eval"] == len(read_jsonl(tiny_world["eval_questions"])) == 300
    assert counts["shift_eval"] == len(read_jsonl(tiny_world["shift_eval_questions"])) == 300
    assert counts["qwen_train"] == len(read_json(tiny_world["qwen_train_json"])) > counts["train"]


def test_same_seed_gives_identical_world_and_another_seed_differs(tiny_world, tmp_path):
    again = tw.build(tmp_path / "again", seed=0, verbose=False)
    other = tw.build(tmp_path / "other", seed=1, verbose=False)

    assert tree_digest(world_root(again)) == tree_digest(world_root(tiny_world))
    same, different, reference = model_tensors(again), model_tensors(other), model_tensors(tiny_world)
    for key in MODEL_KEYS:
        assert same[key].keys() == reference[key].keys()
        assert all(torch.equal(same[key][name], reference[key][name]) for name in reference[key]), key
        assert not all(torch.equal(different[key][name], reference[key][name]) for name in reference[key]), key
    with open(other["eval_answers"], "rb") as a, open(tiny_world["eval_answers"], "rb") as b:
        assert a.read() != b.read()


def test_build_reuses_a_matching_world(tiny_world):
    manifest_path = os.path.join(world_root(tiny_world), "manifest.json")
    before = os.stat(manifest_path).st_mtime_ns
    assert tw.build(world_root(tiny_world), verbose=False) == tiny_world
    assert os.stat(manifest_path).st_mtime_ns == before


def test_build_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no tiny world"):
        tw.build(tmp_path, verbose=False)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_manifest_paths_follow_a_moved_world(tiny_world, tmp_path):
    shutil.copy(os.path.join(world_root(tiny_world), "manifest.json"), tmp_path / "manifest.json")
    moved = tw.load_manifest(tmp_path)
    for key in tw.PATH_KEYS:
        assert moved[key] == os.path.join(tmp_path, os.path.relpath(tiny_world[key], world_root(tiny_world))), key


# --- data ---------------------------------------------------------------------------------------------------------


def test_rendered_pixels_match_the_scene_descriptions(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    for split, background_is_white in (("train", True), ("eval", True), ("shift_train", False), ("shift_eval", False)):
        paths = sorted(p for p in scenes if p.startswith(split + "/"))[:15]
        for path in paths:
            image = Image.open(os.path.join(tiny_world["image_folder"], path)).convert("RGB")
            assert image.size == (112, 112)
            assert (image.getpixel((0, 0)) == (255, 255, 255)) == background_is_white, path
            for shape in scenes[path]["shapes"]:
                assert image.getpixel((shape["x"], shape["y"])) == COLOURS[shape["colour"]], (path, shape)


def test_eval_answers_follow_from_the_images(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    for split in ("eval", "shift_eval"):
        questions_key, answers_key = f"{split}_questions", f"{split}_answers"
        truth = {row["question_id"]: row for row in read_jsonl(tiny_world[answers_key])}
        for question in read_jsonl(tiny_world[questions_key]):
            row = truth[question["question_id"]]
            assert row["family"] == question["category"]
            assert row["answer"] == expected_answer(question["text"], scenes[question["image"]]), question


def test_training_answers_follow_from_the_images(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    for key in ("llava_train_json", "llava_shift_train_json"):
        for record in read_json(tiny_world[key]):
            if "image" not in record:
                continue
            turns = record["conversations"]
            for human, gpt in zip(turns[::2], turns[1::2]):
                question = human["value"].replace("<image>", "").strip()
                assert gpt["value"] == expected_answer(question, scenes[record["image"]]), record


def test_eval_splits_are_balanced_over_the_families(tiny_world):
    for key in ("eval_answers", "shift_eval_answers"):
        families = [row["family"] for row in read_jsonl(tiny_world[key])]
        assert {f: families.count(f) for f in tiny_world["families"]} == dict.fromkeys(tiny_world["families"], 60), key


def test_training_splits_weigh_the_slow_families_more(tiny_world):
    # Weights colour 2, shape 3, count 3, yes/no 2, position 3 (of 13) over the 94% single-image samples.
    for key in ("llava_train_json", "llava_shift_train_json"):
        families = [r["family"] for r in read_json(tiny_world[key])]
        share = {f: families.count(f) / len(families) for f in tiny_world["families"]}
        for family, weight in {"colour": 2, "shape": 3, "count": 3, "yesno": 2, "position": 3}.items():
            assert share[family] == pytest.approx(0.94 * weight / 13, abs=0.005), (key, share)


def test_colour_shape_and_yesno_questions_show_one_large_shape(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    questions = [q for k in QUESTION_FILES for q in read_jsonl(tiny_world[k])
                 if q["category"] in ("colour", "shape", "yesno")]
    assert questions
    sides = []
    for question in questions:
        (only,) = scenes[question["image"]]["shapes"]
        sides.append(2 * only["half"] / 112)
        assert 0 <= only["x"] - only["half"] and only["x"] + only["half"] < 112, question
        if question["category"] == "yesno":  # it names the shape shown; the colour is the question
            assert f" {only['shape']}?" in question["text"].split("\n")[0], question
    assert 0.48 <= min(sides) and max(sides) <= 0.72 and max(sides) - min(sides) > 0.15
    centres = {(scenes[q["image"]]["shapes"][0]["x"], scenes[q["image"]]["shapes"][0]["y"]) for q in questions}
    assert len(centres) > len(questions) // 4  # the position is jittered


def test_count_questions_show_one_to_four_equal_shapes_one_per_quadrant(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    questions = [q for k in QUESTION_FILES for q in read_jsonl(tiny_world[k]) if q["category"] == "count"]
    counts = set()
    for question in questions:
        shapes = scenes[question["image"]]["shapes"]
        asked = re.fullmatch(r"How many (\w+)s are there\?", question["text"].split("\n")[0])[1]
        assert all(s["shape"] == asked for s in shapes) and len({s["half"] for s in shapes}) == 1, question
        quadrants = {(s["x"] >= 56, s["y"] >= 56) for s in shapes}
        assert len(quadrants) == len(shapes), question
        for s in shapes:  # inside its quadrant, clear of the middle lines
            assert min(abs(s["x"] - 56), abs(s["y"] - 56)) >= s["half"], question
        counts.add(len(shapes))
    assert counts == {1, 2, 3, 4}


def test_position_questions_show_one_medium_shape_off_centre(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    questions = [q for k in QUESTION_FILES for q in read_jsonl(tiny_world[k]) if q["category"] == "position"]
    for question in questions:
        (only,) = scenes[question["image"]]["shapes"]
        assert 18 <= only["half"] <= 24 and abs(only["x"] - 56) >= 12, question


def test_eval_and_training_images_do_not_overlap(tiny_world):
    def image_digests(paths):
        digests = set()
        for path in paths:
            with open(os.path.join(tiny_world["image_folder"], path), "rb") as f:
                digests.add(hashlib.sha256(f.read()).hexdigest())
        return digests

    train_paths = {r["image"] for k in ("llava_train_json", "llava_shift_train_json")
                   for r in read_json(tiny_world[k]) if "image" in r}
    eval_paths = {q["image"] for k in QUESTION_FILES for q in read_jsonl(tiny_world[k])}
    assert train_paths and eval_paths and not train_paths & eval_paths
    assert not image_digests(train_paths) & image_digests(eval_paths)


def test_llava_json_has_one_image_at_most_and_both_placeholder_positions(tiny_world):
    records = read_json(tiny_world["llava_train_json"])
    first_values = [r["conversations"][0]["value"] for r in records if "image" in r]
    assert all(isinstance(r.get("image", ""), str) for r in records)
    assert all(v.count("<image>") == 1 for v in first_values)
    assert all("<image>" not in t["value"] for r in records for t in r["conversations"][1:])
    assert all("<image>" not in r["conversations"][0]["value"] for r in records if "image" not in r)
    leading = sum(v.startswith("<image>\n") for v in first_values)
    assert 0 < len(first_values) - leading < 0.2 * len(first_values)  # a few put the image after the text
    families = [r["family"] for r in records]
    assert 0 < families.count("text") <= 0.03 * len(records)
    assert 0 < families.count("multi_turn") <= 0.06 * len(records)
    assert all(len(r["conversations"]) == 4 for r in records if r["family"] == "multi_turn")
    for record in records:
        assert [t["from"] for t in record["conversations"]] == ["human", "gpt"] * (len(record["conversations"]) // 2)


def test_qwen_json_adds_two_image_samples_answered_by_one_image(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    multi = [r for r in read_json(tiny_world["qwen_train_json"]) if r["family"] == "multi_image"]
    assert multi
    for record in multi:
        question, answer = (turn["value"] for turn in record["conversations"])
        assert len(record["image"]) == 2 and question.startswith("<image>\n<image>\n")
        subject = re.search(r"Which image shows an? (\w+)( object)?, the first or the second\?", question)
        key = "colour" if subject[2] else "shape"
        shows = [any(s[key] == subject[1] for s in scenes[path]["shapes"]) for path in record["image"]]
        assert shows == ([True, False] if answer == "first" else [False, True]), record


def test_mmpr_meta_points_at_consistent_annotations(tiny_world):
    meta_dir = os.path.dirname(tiny_world["mmpr_meta"])
    meta = read_json(tiny_world["mmpr_meta"])
    assert 2 <= len(meta) <= 3 and {m["repeat_time"] for m in meta.values()} == {1, 0.5, 2}
    for source in meta.values():
        root = os.path.normpath(os.path.join(meta_dir, source["root"]))
        assert root == tiny_world["image_folder"]
        rows = read_jsonl(os.path.join(meta_dir, source["annotation"]))
        assert len(rows) == source["length"] > 0
        for row in rows:
            images = row["image"] if isinstance(row["image"], list) else [row["image"]]
            assert row["question"].count("<image>") == len(images)
            assert row["chosen"] != row["rejected"]
            assert all(os.path.isfile(os.path.join(root, image)) for image in images)


# --- tokenizers and models ----------------------------------------------------------------------------------------


def test_llava_tokenizer_matches_raw_sentencepiece_and_adds_no_bos(tiny_world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_world["llava_llm"])
    raw = spm.SentencePieceProcessor(model_file=os.path.join(tiny_world["llava_llm"], "tokenizer.model"))
    question = read_jsonl(tiny_world["eval_questions"])[0]["text"]
    # (Text that starts with a space differs: transformers' Metaspace skips the dummy prefix sentencepiece adds.)
    for text in (question, "USER: Is there a red square? ASSISTANT: no", "two  spaces\n\n and ünïcode 42 ☃"):
        assert tokenizer(text).input_ids == raw.encode(text), text
    assert tokenizer("red").input_ids[0] != tokenizer.bos_token_id == 1  # transformers 5.23: no BOS added
    assert (tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.pad_token) == (0, 2, None)
    assert tokenizer.model_max_length == 2048 and tokenizer.padding_side == "right"


def test_every_answer_word_is_one_token(tiny_world):
    from transformers import AutoTokenizer

    llava = AutoTokenizer.from_pretrained(tiny_world["llava_llm"])
    qwen = AutoTokenizer.from_pretrained(tiny_world["qwen_model"])
    for word in tiny_world["answer_words"]:
        assert llava.convert_ids_to_tokens(llava(word).input_ids) == ["▁" + word]
        # as the assistant reply in LLaVA's vicuna_v1 template
        assert llava(f"ASSISTANT: {word}").input_ids[-1] == llava(word).input_ids[0]
        assert len(qwen(word).input_ids) == 1 and len(qwen(" " + word).input_ids) == 1


def test_llava_llm_and_clip_tower_load_and_run(tiny_world):
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, LlamaForCausalLM

    llm, info = LlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_world["llava_llm"])
    assert llm.config.vocab_size == len(tokenizer) and llm.config.hidden_size == 128
    ids = torch.tensor([[1] + tokenizer("USER: hi ASSISTANT:").input_ids])
    assert llm(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))

    tower, info = CLIPVisionModel.from_pretrained(tiny_world["llava_vision_tower"], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    processor = CLIPImageProcessor.from_pretrained(tiny_world["llava_vision_tower"])
    assert processor.crop_size["height"] == processor.crop_size["width"] == 56
    image = Image.open(os.path.join(tiny_world["image_folder"], "eval/00000.png"))
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 56, 56)
    hidden = tower(pixels, output_hidden_states=True).hidden_states[-2]
    assert hidden.shape == (1, 17, 64)  # 16 patches + CLS


def test_qwen_processor_and_model_load_and_generate(tiny_world):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    processor = AutoProcessor.from_pretrained(tiny_world["qwen_model"])
    assert isinstance(processor, Qwen2_5_VLProcessor)  # not just a tokenizer
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_world["qwen_model"], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer, config = processor.tokenizer, model.config
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.text_config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config.text_config.vocab_size == len(tokenizer)

    question = read_jsonl(tiny_world["eval_questions"])[0]
    image = Image.open(os.path.join(tiny_world["image_folder"], question["image"]))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question["text"]}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                             "<|vision_start|><|image_pad|><|vision_end|>")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert (inputs["input_ids"] == config.image_token_id).sum() == 16
    assert "mm_token_type_ids" in inputs

    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(tokenizer))
    assert generated.shape[1] > inputs["input_ids"].shape[1]


# --- scoring ------------------------------------------------------------------------------------------------------


def test_score_answers_matches_hand_computed_accuracy(tmp_path):
    truth = [
        {"question_id": "q1", "answer": "red", "family": "colour"},
        {"question_id": "q2", "answer": "blue", "family": "colour"},
        {"question_id": "q3", "answer": "circle", "family": "shape"},
        {"question_id": "q4", "answer": "yes", "family": "yesno"},
        {"question_id": "q5", "answer": "no", "family": "yesno"},
    ]
    answers = [
        {"question_id": "q1", "text": " Red."},  # right: case and punctuation do not matter
        {"question_id": "q2", "text": "green"},  # wrong
        {"question_id": "q3", "text": "circle, I think"},  # right: first word only
        {"question_id": "q4", "text": "the answer is yes"},  # wrong: first word is "the"
    ]  # q5 unanswered: wrong
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth))
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in answers))
    scores = tw.score_answers(str(tmp_path / "answers.jsonl"), str(tmp_path / "truth.jsonl"))
    assert scores["overall"] == pytest.approx(2 / 5)
    assert scores["per_family"] == {"colour": 0.5, "shape": 1.0, "yesno": 0.0}
    assert scores["n"] == 5 and scores["missing"] == 1


def test_score_answers_rejects_unknown_question_ids(tmp_path):
    (tmp_path / "truth.jsonl").write_text(json.dumps({"question_id": 1, "answer": "red", "family": "colour"}) + "\n")
    (tmp_path / "answers.jsonl").write_text(json.dumps({"question_id": 2, "text": "red"}) + "\n")
    with pytest.raises(ValueError, match="not in"):
        tw.score_answers(str(tmp_path / "answers.jsonl"), str(tmp_path / "truth.jsonl"))
