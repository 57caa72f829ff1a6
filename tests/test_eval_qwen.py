"""Qwen2.5-VL through the shared evaluation path: every feature LLaVA's eval has (batching with the same greedy
answers as batch 1, chunking, seeded sampling, LLaVA's record format, the resolved noise mode in the metadata)."""

import json

import pytest

from qwen_builders import build_tiny_qwen
from qwen_noise.eval import model_vqa_loader


@pytest.fixture(scope="module")
def tiny_qwen(tiny_world, tmp_path_factory):
    return build_tiny_qwen(tiny_world, tmp_path_factory.mktemp("qwen-eval") / "tiny-qwen")


@pytest.fixture(scope="module")
def questions(tiny_world, tmp_path_factory):
    """Seven image questions of several families and lengths, and one text-only question."""
    rows = [json.loads(line) for line in open(tiny_world["eval_questions"])][:40:6]
    rows = rows[:7] + [{"question_id": "text-only", "text": "What colour is the sky?\nAnswer with one word."}]
    path = tmp_path_factory.mktemp("qwen-q") / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def answers(tiny_qwen, tiny_world, questions, out, *extra):
    model_vqa_loader.main([
        "--model-path", tiny_qwen, "--question-file", questions, "--image-folder", tiny_world["image_folder"],
        "--answers-file", str(out), "--max_new_tokens", "6", "--device", "cpu", "--num-workers", "0", *extra])
    return [json.loads(line) for line in open(out)]


def test_batched_greedy_answers_equal_batch_size_one(tiny_qwen, tiny_world, questions, tmp_path):
    one = answers(tiny_qwen, tiny_world, questions, tmp_path / "bs1.jsonl", "--temperature", "0")
    four = answers(tiny_qwen, tiny_world, questions, tmp_path / "bs4.jsonl", "--temperature", "0", "--batch-size", "4")
    assert [r["question_id"] for r in four] == [r["question_id"] for r in one]
    assert [r["text"] for r in four] == [r["text"] for r in one]
    assert len({r["text"] for r in one}) > 1  # the answers depend on the question: the equality says something


def test_chunks_concatenate_to_the_whole_file_with_llava_records(tiny_qwen, tiny_world, questions, tmp_path):
    mean = ("--temperature", "0", "--noise-mode", "mean")  # sampled noise per question is the reliability tests'
    whole = answers(tiny_qwen, tiny_world, questions, tmp_path / "all.jsonl", *mean)
    parts = [answers(tiny_qwen, tiny_world, questions, tmp_path / f"c{k}.jsonl", *mean,
                     "--num-chunks", "3", "--chunk-idx", str(k)) for k in range(3)]
    assert [len(p) for p in parts] == [3, 3, 2]  # ceil(8 / 3) questions per chunk
    merged = [r for part in parts for r in part]
    assert [(r["question_id"], r["text"]) for r in merged] == [(r["question_id"], r["text"]) for r in whole]
    for record in merged:
        assert set(record) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
        assert record["model_id"] == "tiny-qwen" and len(record["answer_id"]) == 22
        assert record["metadata"] == {"noise_mode": "mean", "seed": 0}
    default = answers(tiny_qwen, tiny_world, questions, tmp_path / "default.jsonl", "--temperature", "0")
    assert default[0]["metadata"]["noise_mode"] == "sample (checkpoint default)"


def test_same_seed_same_sampled_answers_and_the_seed_reaches_the_noise(tiny_qwen, tiny_world, questions, tmp_path):
    def sampled(name, seed):
        return [r["text"] for r in answers(tiny_qwen, tiny_world, questions, tmp_path / name, "--temperature", "0",
                                           "--noise-mode", "sample", "--seed", str(seed), "--batch-size", "4")]

    assert sampled("a.jsonl", 3) == sampled("b.jsonl", 3)
    assert sampled("a.jsonl", 3) != sampled("c.jsonl", 4)
