"""LLaVA eval inference on the tiny world: batching, seeding, noise modes, chunking, the eval scripts end to end."""

import base64
import json
import os
import subprocess
import sys

import pytest

from llava_builders import tiny_llava_config
from llava_noise.eval import model_vqa_loader, model_vqa_mmbench, model_vqa_science, run_llava
from mung.answering import answer_questions
from mung.eval.questions import questions_from_jsonl
from mung.generation import GenerationSettings
from mung.loading import LoadOptions, load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_tiny_llava(tiny_world, out_dir, inference_mode="mean"):
    """A LLaVA-1.5 + generator checkpoint from the tiny world's Llama and CLIP (projector/generator random)."""
    from transformers import AutoTokenizer

    from llava_noise.model import LlavaLlamaForCausalLM

    config = tiny_llava_config(
        tiny_world,
        generator={"inference_mode": inference_mode, "base_model_type": "llava_noise"},
        mm_vision_select_layer=-2,
        image_aspect_ratio="pad",
    )
    model = LlavaLlamaForCausalLM.from_pretrained(tiny_world["llava_llm"], config=config)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tiny_world["llava_llm"]).save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="module")
def tiny_llava(tiny_world, tmp_path_factory):
    return build_tiny_llava(tiny_world, tmp_path_factory.mktemp("ckpt") / "tiny-llava")


@pytest.fixture(scope="module")
def questions(tiny_world, tmp_path_factory):
    """Seven tiny-world questions of different lengths (one per family first) plus one text-only question."""
    rows = [json.loads(l) for l in open(tiny_world["eval_questions"])]
    picked, seen = [], set()
    for r in rows:
        if r["category"] not in seen:
            seen.add(r["category"])
            picked.append(r)
    picked += [r for r in rows if r not in picked][: 7 - len(picked)]
    picked.append({"question_id": "text-only", "text": "What colour is the sky?\nAnswer with one word."})
    path = tmp_path_factory.mktemp("q") / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in picked))
    return str(path)


def run_loader(tiny_llava, tiny_world, questions, out, *extra):
    model_vqa_loader.main([
        "--model-path", tiny_llava, "--question-file", questions, "--image-folder", tiny_world["image_folder"],
        "--answers-file", str(out), "--conv-mode", "vicuna_v1", "--temperature", "0", "--max_new_tokens", "6",
        "--device", "cpu", "--num-workers", "0", *extra])
    return [json.loads(l) for l in open(out)]


def test_batched_greedy_answers_equal_batch_size_one(tiny_llava, tiny_world, questions, tmp_path):
    one = run_loader(tiny_llava, tiny_world, questions, tmp_path / "bs1.jsonl")
    three = run_loader(tiny_llava, tiny_world, questions, tmp_path / "bs3.jsonl", "--batch-size", "3")
    assert [r["question_id"] for r in three] == [r["question_id"] for r in one]
    assert [r["text"] for r in three] == [r["text"] for r in one]
    assert all(r["text"] for r in one)


def test_answer_records_have_the_llava_fields(tiny_llava, tiny_world, questions, tmp_path):
    rows = run_loader(tiny_llava, tiny_world, questions, tmp_path / "a.jsonl", "--num-chunks", "4", "--chunk-idx", "3")
    source = [json.loads(l) for l in open(questions)]
    assert [r["question_id"] for r in rows] == [q["question_id"] for q in source[6:8]]  # ceil(8/4)=2 per chunk
    for r, q in zip(rows, source[6:8]):
        assert set(r) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
        assert r["prompt"] == q["text"] and r["model_id"] == "tiny-llava"
        assert r["metadata"]["noise_mode"] == "mean (checkpoint default)"


def test_same_seed_gives_same_sampled_noise_answers(tiny_llava, tiny_world, questions, tmp_path):
    def sampled(name, seed):
        return run_loader(tiny_llava, tiny_world, questions, tmp_path / name, "--noise-mode", "sample",
                          "--seed", str(seed), "--batch-size", "4")

    a, b, c = sampled("a.jsonl", 3), sampled("b.jsonl", 3), sampled("c.jsonl", 4)
    assert [r["text"] for r in a] == [r["text"] for r in b]
    assert [r["text"] for r in a] != [r["text"] for r in c]  # the seed does reach the noise


@pytest.mark.parametrize("flag, expected", [(None, "mean"), ("sample", "sample"), ("mean", "mean"), ("off", "off")])
def test_noise_mode_flag_reaches_the_generator(tiny_llava, tiny_world, questions, tmp_path, flag, expected):
    loaded = load(tiny_llava, options=LoadOptions(device="cpu"), noise_mode=flag, template="vicuna_v1")
    seen = []
    loaded.model.get_model().noise_generator.register_forward_hook(lambda m, i, out: seen.append(out.mode))
    answer_questions(questions_from_jsonl(questions, tiny_world["image_folder"])[:2], loaded,
                     GenerationSettings(temperature=0, max_new_tokens=2), str(tmp_path / "a.jsonl"), batch_size=2)
    assert seen and set(seen) == {expected}


def test_science_qa_answers_then_scores(tiny_llava, tiny_world, tmp_path):
    rows = [json.loads(l) for l in open(tiny_world["eval_questions"])][:2]
    items = [{"id": f"p{i}", "image": r["image"], "conversations": [
        {"from": "human", "value": "<image>\nWhich?\nOptions: (A) red (B) blue"}, {"from": "gpt", "value": "A"}]}
        for i, r in enumerate(rows)]
    (tmp_path / "q.json").write_text(json.dumps(items))
    out = tmp_path / "a.jsonl"
    model_vqa_science.main(["--model-path", tiny_llava, "--question-file", str(tmp_path / "q.json"),
                            "--image-folder", tiny_world["image_folder"], "--answers-file", str(out),
                            "--single-pred-prompt", "--conv-mode", "vicuna_v1", "--temperature", "0",
                            "--max_new_tokens", "3", "--device", "cpu"])
    answers = [json.loads(l) for l in open(out)]
    assert [a["question_id"] for a in answers] == ["p0", "p1"]
    assert answers[0]["prompt"] == ("<image>\nWhich?\nOptions: (A) red (B) blue\n"
                                    "Answer with the option's letter from the given choices directly.")


def test_mmbench_all_rounds_rotate_options(tiny_llava, tiny_world, tmp_path):
    image = os.path.join(tiny_world["image_folder"], json.loads(open(tiny_world["eval_questions"]).readline())["image"])
    b64 = base64.b64encode(open(image, "rb").read()).decode()
    tsv = tmp_path / "mmb.tsv"
    tsv.write_text("index\tquestion\thint\tA\tB\tC\tD\tanswer\timage\n"
                   f"7\tColour?\tnan\tred\tblue\tgreen\tnan\tA\t{b64}\n")
    out = tmp_path / "a.jsonl"
    model_vqa_mmbench.main(["--model-path", tiny_llava, "--question-file", str(tsv), "--answers-file", str(out),
                            "--all-rounds", "--single-pred-prompt", "--conv-mode", "vicuna_v1",
                            "--temperature", "0", "--max_new_tokens", "2", "--device", "cpu"])
    answers = [json.loads(l) for l in open(out)]
    assert [(a["question_id"], a["round_id"]) for a in answers] == [(7, 0), (7, 1), (7, 2)]
    assert answers[1]["options"] == ["blue", "green", "red"] and answers[1]["option_char"] == ["B", "C", "A"]
    assert answers[1]["prompt"].startswith("Colour?\nA. blue\nB. green\nC. red\n")


def test_run_llava_answers_like_the_loader(tiny_llava, tiny_world, questions, tmp_path, capsys):
    q = json.loads(open(questions).readline())
    loader = run_loader(tiny_llava, tiny_world, questions, tmp_path / "a.jsonl", "--num-chunks", "8")
    capsys.readouterr()
    answer = run_llava.main(["--model-path", tiny_llava, "--image-file",
                             os.path.join(tiny_world["image_folder"], q["image"]), "--query", q["text"],
                             "--temperature", "0", "--max_new_tokens", "6", "--device", "cpu"])
    assert capsys.readouterr().out.strip().endswith(loader[0]["text"])
    assert answer == loader[0]["text"]


def fake_python(tmp_path):
    """A stand-in interpreter that records each call and writes one answer line per chunk."""
    stub = tmp_path / "fake_python"
    stub.write_text("#!/bin/bash\n"
                    f"echo \"$CUDA_VISIBLE_DEVICES $*\" >> {tmp_path}/calls.txt\n"
                    "while [ $# -gt 0 ]; do case $1 in\n"
                    "  --answers-file) out=$2; shift;; --chunk-idx) idx=$2; shift;; esac; shift; done\n"
                    "if [ -n \"${out:-}\" ]; then echo \"{\\\"chunk\\\": $idx}\" > \"$out\"; fi\n")
    stub.chmod(0o755)
    return str(stub)


def test_eval_script_runs_one_chunk_per_gpu_and_merges_in_order(tmp_path):
    root = tmp_path / "eval"
    (root / "pope" / "val2014").mkdir(parents=True)
    (root / "pope" / "coco").mkdir()
    (root / "pope" / "llava_pope_test.jsonl").write_text("")
    env = dict(os.environ, MODEL_PATH="/ckpts/my-model", DATA_ROOT=str(root), CUDA_VISIBLE_DEVICES="3,5,6",
               PYTHON=fake_python(tmp_path))
    subprocess.run(["bash", "scripts/v1_5/eval/pope.sh"], cwd=REPO, env=env, check=True, capture_output=True)
    merged = [json.loads(l) for l in open(root / "pope" / "answers" / "my-model.jsonl")]
    assert merged == [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]
    calls = open(tmp_path / "calls.txt").read().splitlines()
    chunk_calls = sorted(c for c in calls if "model_vqa_loader" in c)
    assert [c.split()[0] for c in chunk_calls] == ["3", "5", "6"]
    assert all("--num-chunks 3" in c and "--model-path /ckpts/my-model" in c for c in chunk_calls)
    assert "-m mung.eval.eval_pope " in calls[-1]  # the shared scorer, for any backbone


def test_eval_script_falls_back_to_one_cpu_chunk(tmp_path):
    root = tmp_path / "eval"
    (root / "textvqa" / "train_images").mkdir(parents=True)
    for name in ("llava_textvqa_val_v051_ocr.jsonl", "TextVQA_0.5.1_val.json"):
        (root / "textvqa" / name).write_text("")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(MODEL_PATH="/ckpts/m", DATA_ROOT=str(root), PYTHON=fake_python(tmp_path), PATH="/usr/bin:/bin")
    subprocess.run(["bash", "scripts/v1_5/eval/textvqa.sh"], cwd=REPO, env=env, check=True, capture_output=True)
    chunk_calls = [c for c in open(tmp_path / "calls.txt").read().splitlines() if "model_vqa_loader" in c]
    assert len(chunk_calls) == 1 and "--device cpu" in chunk_calls[0] and "--num-chunks 1" in chunk_calls[0]


def test_tiny_world_eval_script_end_to_end(tiny_llava, tiny_world, tmp_path):
    """scripts/v1_5/eval/tiny_world.sh on 24 tiny-world questions, then its scorer, against score_answers."""
    from tiny_world import score_answers

    q = tmp_path / "q.jsonl"
    t = tmp_path / "t.jsonl"
    q.write_text("".join(open(tiny_world["eval_questions"]).readlines()[:24]))
    t.write_text("".join(open(tiny_world["eval_answers"]).readlines()[:24]))
    world_dir = os.path.dirname(tiny_world["llava_llm"].rstrip("/"))
    while not os.path.exists(os.path.join(world_dir, "manifest.json")):
        world_dir = os.path.dirname(world_dir)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(MODEL_PATH=tiny_llava, TINY_WORLD=world_dir, QUESTIONS=str(q), TRUTH=str(t),
               DATA_ROOT=str(tmp_path / "eval"), PYTHON=sys.executable, EXTRA_ARGS="--num-workers 0")
    done = subprocess.run(["bash", "scripts/v1_5/eval/tiny_world.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answers = tmp_path / "eval" / "tiny_world" / "answers" / "eval" / "tiny-llava" / "merge.jsonl"
    assert len(open(answers).readlines()) == 24
    scores = json.load(open(tmp_path / "eval" / "tiny_world" / "answers" / "eval" / "tiny-llava_scores.json"))
    assert scores == score_answers(str(answers), str(t))
    assert scores["n"] == 24 and scores["missing"] == 0
    assert "overall:" in done.stdout
