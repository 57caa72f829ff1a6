"""A Qwen2.5-VL answers file scored by the shared scorers (``mung.eval``), the same ones LLaVA's answers go through."""

import json

import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from mung.eval import eval_pope, eval_tiny_world
from qwen_builders import build_tiny_qwen
from qwen_noise.eval import model_vqa_loader


def jsonl_rows(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def pope_files(tiny_world, folder):
    """Eight of the tiny world's yes/no questions as a POPE benchmark of two categories, both answers in each (five
    "random": its first three "yes" and first two "no" questions; three "adversarial": the next "yes" and the next
    two "no"): question file, annotation folder (coco_pope_<category>.json, labels in question order) and the
    matching tiny-world truth file."""
    yesno = [row for row in jsonl_rows(tiny_world["eval_answers"]) if row["family"] == "yesno"]
    yes, no = [r for r in yesno if r["answer"] == "yes"], [r for r in yesno if r["answer"] == "no"]
    truth = yes[:3] + no[:2] + yes[3:4] + no[2:4]
    by_id = {row["question_id"]: row for row in jsonl_rows(tiny_world["eval_questions"])}
    questions = [dict(by_id[row["question_id"]], category="random" if i < 5 else "adversarial")
                 for i, row in enumerate(truth)]
    annotations = folder / "coco"
    annotations.mkdir()
    for category in ("random", "adversarial"):
        write_jsonl(annotations / f"coco_pope_{category}.json", [
            {"question_id": q["question_id"], "image": q["image"], "label": t["answer"]}
            for q, t in zip(questions, truth) if q["category"] == category])
    return (write_jsonl(folder / "pope_questions.jsonl", questions), str(annotations),
            write_jsonl(folder / "truth.jsonl", truth), questions, truth)


def yes_saying_qwen(tiny_world, folder):
    """The tiny Qwen + random generator checkpoint, its generation config limited to the tokens "yes", " yes" and
    ".": untrained, its answers hardly depend on the input, and unlimited they are no word at all (0 % on the tiny
    world). Limited, they are POPE's "yes" and, for the tiny-world questions whose truth is yes, the right word."""
    checkpoint = build_tiny_qwen(tiny_world, folder)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    keep = set(tokenizer.convert_tokens_to_ids(["yes", "Ġyes", "."]))
    assert tokenizer.unk_token_id not in keep and len(keep) == 3
    vocab_size = AutoConfig.from_pretrained(checkpoint).get_text_config().vocab_size
    generation = GenerationConfig.from_pretrained(checkpoint)
    generation.suppress_tokens = [i for i in range(vocab_size) if i not in keep]
    generation.save_pretrained(checkpoint)
    return checkpoint


def pope_yes_no(text):
    """POPE's reading of an answer: "no" when its first sentence, commas removed, has the space-separated word no,
    No or not; otherwise "yes"."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if {"no", "No", "not"} & set(words) else "yes"


def recount(predictions, labels):
    tp = sum(p == "yes" and l == "yes" for p, l in zip(predictions, labels))
    fp = sum(p == "yes" and l == "no" for p, l in zip(predictions, labels))
    tn = sum(p == "no" and l == "no" for p, l in zip(predictions, labels))
    fn = sum(p == "no" and l == "yes" for p, l in zip(predictions, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"TP": tp, "FP": fp, "TN": tn, "FN": fn, "accuracy": (tp + tn) / len(labels), "precision": precision,
            "recall": recall, "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": (tp + fp) / len(labels)}


def test_qwen_answers_scored_by_pope_and_tiny_world_scorers(tiny_world, tmp_path):
    question_file, annotations, truth_file, questions, truth = pope_files(tiny_world, tmp_path)
    for category in ("random", "adversarial"):  # both labels in each, so precision and accuracy are not 0 or 1
        assert {t["answer"] for q, t in zip(questions, truth) if q["category"] == category} == {"yes", "no"}
    answers_file = tmp_path / "answers.jsonl"
    model_vqa_loader.main([
        "--model-path", yes_saying_qwen(tiny_world, tmp_path / "tiny-qwen"), "--question-file", question_file,
        "--image-folder", tiny_world["image_folder"], "--answers-file", str(answers_file), "--num-workers", "0",
        "--device", "cpu", "--temperature", "0", "--max_new_tokens", "3"])
    answers = jsonl_rows(answers_file)
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in questions]

    pope_out = tmp_path / "pope_scores.json"
    eval_pope.main(["--annotation-dir", annotations, "--question-file", question_file,
                    "--result-file", str(answers_file), "--output-file", str(pope_out)])
    scores = json.loads(pope_out.read_text())
    expected = {}
    for category in ("random", "adversarial"):
        rows = [(a, t) for a, q, t in zip(answers, questions, truth) if q["category"] == category]
        expected[category] = recount([pope_yes_no(a["text"]) for a, _ in rows], [t["answer"] for _, t in rows])
        assert scores[category] == pytest.approx(expected[category]), category
    for metric in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
        mean = (expected["random"][metric] + expected["adversarial"][metric]) / 2
        assert scores["average"][metric] == pytest.approx(mean), metric

    world_out = tmp_path / "tiny_world_scores.json"
    eval_tiny_world.main(["--answers-file", str(answers_file), "--truth-file", truth_file,
                          "--output-file", str(world_out)])
    # the tiny world's rule: the first whitespace-separated word, lower-cased, punctuation around it stripped
    right = sum(bool(a["text"].split()) and a["text"].split()[0].lower().strip(".,!?;:'\"") == t["answer"]
                for a, t in zip(answers, truth))
    assert 0 < right < 8  # the recount is not vacuous
    assert json.loads(world_out.read_text()) == {
        "overall": pytest.approx(right / 8), "per_family": {"yesno": pytest.approx(right / 8)}, "n": 8,
        "n_per_family": {"yesno": 8}, "missing": 0}
