"""Tiny world builder version 4: a validation split disjoint from the training and evaluation splits, the
distractor splits (several shapes, a question about the one it names), and version 3 still building as it was."""

import json
import os
import re
from collections import Counter

import tiny_world as tw


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def layouts(world, image_paths):
    """(background, shapes) of each image, the noise left out: the same shapes in the same places."""
    scenes = read_json(world["scenes"])
    return {(scenes[p]["background"], json.dumps(scenes[p]["shapes"], sort_keys=True)) for p in image_paths}


def eval_images(world, key):
    return {q["image"] for q in read_jsonl(world[key])}


def train_images(world, key):
    return {r["image"] for r in read_json(world[key]) if isinstance(r.get("image"), str)}


def test_validation_splits_share_no_question_image_or_layout_with_train_and_eval(tiny_world):
    settings = {
        "shift_val_questions": (["llava_train_json", "llava_shift_train_json"], ["eval_questions",
                                                                              "shift_eval_questions"]),
        "distractor_val_questions": (["llava_distractor_train_json"], ["distractor_eval_questions"]),
    }
    for val_key, (train_keys, eval_keys) in settings.items():
        val = eval_images(tiny_world, val_key)
        others = set().union(*(train_images(tiny_world, k) for k in train_keys),
                             *(eval_images(tiny_world, k) for k in eval_keys))
        assert len(val) == 300 and len(others) > 1000
        assert not val & others
        assert not layouts(tiny_world, val) & layouts(tiny_world, others), val_key
        val_ids = {q["question_id"] for q in read_jsonl(tiny_world[val_key])}
        other_ids = {q["question_id"] for k in eval_keys for q in read_jsonl(tiny_world[k])}
        assert not val_ids & other_ids


def test_shift_val_is_balanced_and_dark_like_shift_eval(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    truth = read_jsonl(tiny_world["shift_val_answers"])
    assert Counter(r["family"] for r in truth) == dict.fromkeys(tw.FAMILIES, 60)
    assert {scenes[p]["background"] for p in eval_images(tiny_world, "shift_val_questions")} == {"dark"}


def named_target(question, shapes):
    """The shape a distractor question names, found from the question text alone."""
    if m := re.search(r"the (\w+) (?:shape|one)\b", question):
        matches = [s for s in shapes if s["colour"] == m[1]]
    elif m := re.search(r"the shape on the (left|right)", question):
        matches = [s for s in shapes if (s["x"] < 56) == (m[1] == "left") and abs(s["x"] - 56) >= 12]
    else:
        m = re.search(r"the (circle|square|triangle)\b", question)
        matches = [s for s in shapes if s["shape"] == m[1]]
    assert len(matches) == 1, f"{question!r} does not single out one of {shapes}"
    return matches[0]


def expected_distractor_answer(question, shapes):
    question = question.split("\n")[0]
    target = named_target(question, shapes)
    if question.startswith("What color"):
        return target["colour"]
    if question.startswith("What shape"):
        return target["shape"]
    if m := re.fullmatch(r"Is the .+ (\w+)\?", question):
        if m[1] not in ("right",):
            return "yes" if target["colour"] == m[1] else "no"
    assert question.endswith("on the left or the right?"), question
    return "left" if target["x"] < 56 else "right"


def test_distractor_questions_are_about_the_named_shape_among_several(tiny_world):
    scenes = read_json(tiny_world["scenes"])
    questions = read_jsonl(tiny_world["distractor_eval_questions"])
    truth = {r["question_id"]: r for r in read_jsonl(tiny_world["distractor_eval_answers"])}
    counts = Counter()
    for q in questions:
        shapes = scenes[q["image"]]["shapes"]
        assert 2 <= len(shapes) <= 3
        assert truth[q["question_id"]]["answer"] == expected_distractor_answer(q["text"], shapes), q
        counts[truth[q["question_id"]]["family"]] += 1
    assert counts == {"colour": 75, "shape": 75, "yesno": 75, "position": 75}
    # yes/no "no" answers often name a colour another shape in the image has: only binding answers them
    binding = sum(1 for q in questions if truth[q["question_id"]]["family"] == "yesno"
                  and truth[q["question_id"]]["answer"] == "no"
                  and q["text"].split("?")[0].split()[-1] in {s["colour"] for s in scenes[q["image"]]["shapes"]})
    assert binding >= 15


def test_distractor_training_file_has_the_same_kind_of_samples(tiny_world):
    records = read_json(tiny_world["llava_distractor_train_json"])
    scenes = read_json(tiny_world["scenes"])
    assert len(records) == 1000 and read_json(tiny_world["qwen_distractor_train_json"]) == records
    for record in records[:200]:
        shapes = scenes[record["image"]]["shapes"]
        human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"]
        assert gpt == expected_distractor_answer(human.replace("<image>", "").strip(), shapes)


def test_version_3_still_builds_without_the_new_splits_and_with_the_same_files(tiny_world, tmp_path):
    old = tw.build(str(tmp_path / "v3"), version=3, verbose=False)
    assert old["version"] == 3 and "shift_val_questions" not in old
    for key in ("shift_eval_questions", "eval_answers", "llava_shift_train_json"):
        with open(old[key], "rb") as a, open(tiny_world[key], "rb") as b:
            assert a.read() == b.read(), key
    assert tw.build(str(tmp_path / "v3"), version=3, verbose=False) == old  # reused, not rebuilt
