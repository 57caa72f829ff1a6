"""lmms-eval and VLMEvalKit for real, each in its own environment next to .venv (``scripts/harness_envs.sh``:
``.venv-lmms-eval``, ``.venv-vlmeval``), on the tiny world's exported eval questions (``mung.harnesses.export``).

A Qwen2.5-VL checkpoint trained as the quickstart does (a short full fine-tuning for a base, then the generator
alone on the shifted split) answers greedily with mean noise: through ``qwen_noise.serve.api`` to lmms-eval's
``openai`` chat model and to VLMEvalKit's ``run.py --base-url --local-media``, and in VLMEvalKit's own inference
loop with ``QwenNoiseVLM`` (and ``LlavaNoiseVLM`` on a LLaVA checkpoint). Every harness must give each question the
reply this project's eval loader gives and report the accuracy ``mung.eval.eval_tiny_world`` computes from it.
"""

import glob
import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.servers import running_server
from distributed_utils import REPO, child_env
from mung.eval import eval_tiny_world
from mung.harnesses import export
from test_eval_inference import build_tiny_llava
from tiny_runs import tiny_argv, tiny_data, train_as_child

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # a first run builds the environments (~10 min each)

NAME = "tiny_world_eval"
QUESTIONS = 60  # the first 60 eval questions (12 per family in the tiny preset)
MAX_NEW_TOKENS = 16
API_KEY = "sk-harness"


def harness_python(name: str) -> str:
    """The environment's interpreter, built first when it is missing (the script is idempotent)."""
    proc = subprocess.run(["bash", str(REPO / "scripts" / "harness_envs.sh"), name], cwd=REPO, capture_output=True,
                          text=True, timeout=2000)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return str(REPO / f".venv-{name}" / "bin" / "python")


def harness_env(tmp: Path, **extra) -> dict:
    """Offline, with the harnesses' caches in ``tmp``."""
    return child_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp / "hf"), NO_PROXY="127.0.0.1",
                     no_proxy="127.0.0.1", **extra)


def run_harness(command: list[str], tmp: Path, timeout: int = 1200, **extra) -> str:
    proc = subprocess.run(command, cwd=tmp, env=harness_env(tmp, **extra), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def checkpoint(tiny_world, tmp_path_factory) -> dict:
    """{"model_path": generator-only checkpoint, "model_base": its fully fine-tuned base}."""
    root = tmp_path_factory.mktemp("harness_ckpt")
    base_argv = tiny_argv("qwen", tiny_world, tiny_world["qwen_train_json"], tiny_world["image_folder"],
                          root / "base", "--max_steps", "200", "--per_device_train_batch_size", "16",
                          "--logging_steps", "50")
    base_argv[base_argv.index("--tune") + 1] = "full"
    base_argv[base_argv.index("--learning_rate") + 1] = "2e-3"
    proc = train_as_child("qwen", base_argv, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shifted = {**tiny_world, "qwen_train_json": tiny_world["qwen_shift_train_json"], "qwen_model": str(root / "base")}
    mung_argv = tiny_argv("qwen", shifted, tiny_data(shifted, "qwen", root, count=64), tiny_world["image_folder"],
                          root / "mung", "--max_steps", "8", "--per_device_train_batch_size", "8")
    proc = train_as_child("qwen", mung_argv, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"model_path": str(root / "mung"), "model_base": str(root / "base")}


@pytest.fixture(scope="module")
def questions(tiny_world, tmp_path_factory) -> dict:
    """The first QUESTIONS eval questions and their truth, as files."""
    folder = tmp_path_factory.mktemp("harness_questions")
    out = {}
    for key in ("eval_questions", "eval_answers"):
        out[key] = folder / Path(tiny_world[key]).name
        out[key].write_text("".join(open(tiny_world[key]).readlines()[:QUESTIONS]))
    return out


@pytest.fixture(scope="module")
def exported(questions, tiny_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("harness_export") / "export"
    export.main(["--question-file", str(questions["eval_questions"]), "--image-folder", tiny_world["image_folder"],
                 "--truth-file", str(questions["eval_answers"]), "--out", str(out), "--name", NAME,
                 "--max-new-tokens", str(MAX_NEW_TOKENS)])
    return out


def project_answers(backbone, model_args, questions, tiny_world, out: Path) -> dict:
    """{"answers": {question_id: reply}, "accuracy"}: the backbone's eval loader, greedy, mean noise, scored by
    mung.eval.eval_tiny_world."""
    if backbone == "qwen":
        from qwen_noise.eval.model_vqa_loader import main as loader
    else:
        from llava_noise.eval.model_vqa_loader import main as loader
    answers = out / f"{backbone}_answers.jsonl"
    argv = ["--model-path", model_args["model_path"], "--question-file", str(questions["eval_questions"]),
            "--image-folder", tiny_world["image_folder"], "--answers-file", str(answers), "--noise-mode", "mean",
            "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", "--num-workers", "0"]
    if model_args.get("model_base"):
        argv += ["--model-base", model_args["model_base"]]
    loader(argv)
    scores = eval_tiny_world.main(["--answers-file", str(answers), "--truth-file", str(questions["eval_answers"])])
    return {"answers": {r["question_id"]: r["text"] for r in map(json.loads, open(answers))},
            "accuracy": scores["overall"]}


@pytest.fixture(scope="module")
def project(checkpoint, questions, tiny_world, tmp_path_factory) -> dict:
    result = project_answers("qwen", checkpoint, questions, tiny_world, tmp_path_factory.mktemp("harness_project"))
    assert 0 < result["accuracy"] < 1, "a checkpoint answering all or nothing right would make the equality weak"
    return result


@pytest.fixture(scope="module")
def api(checkpoint, tmp_path_factory) -> str:
    """The checkpoint served on 127.0.0.1, file:// images allowed (VLMEvalKit's --local-media)."""
    args = ["--model-path", checkpoint["model_path"], "--model-base", checkpoint["model_base"], "--device", "cpu",
            "--noise-mode", "mean", "--allow-local-images", "--api-key", API_KEY, "--queue-size", "8"]
    log = tmp_path_factory.mktemp("harness_logs") / "api.log"
    with running_server("qwen_noise.serve.api", args, log, ready_path="/health", cwd=str(REPO)) as base_url:
        yield base_url + "/v1"


def test_lmms_eval_openai_model_agrees_with_the_project_scorer(api, exported, project, questions, tmp_path):
    python = harness_python("lmms-eval")
    run_harness([python, "-m", "lmms_eval", "--model", "openai", "--model_args",
                 f"model=qwen-mung,base_url={api},api_key={API_KEY},num_concurrent=4,timeout=600",
                 "--include_path", str(exported / "lmms_eval" / NAME), "--tasks", NAME, "--batch_size", "1",
                 "--output_path", str(tmp_path / "out"), "--log_samples"], tmp_path)
    [results_file] = glob.glob(str(tmp_path / "out" / "*" / "*_results.json"))
    [samples_file] = glob.glob(str(tmp_path / "out" / "*" / f"*_samples_{NAME}.jsonl"))
    ids = [json.loads(line)["question_id"] for line in open(questions["eval_questions"])]
    replies = {ids[s["doc_id"]]: s["filtered_resps"] for s in map(json.loads, open(samples_file))}
    assert replies == project["answers"]
    assert json.load(open(results_file))["results"][NAME]["accuracy,none"] == project["accuracy"]


def test_vlmeval_run_with_base_url_and_local_media_agrees_with_the_project_scorer(api, exported, project, tmp_path):
    python = harness_python("vlmeval")
    lmu = {"LMUData": str(exported / "vlmeval")}
    run_harness([python, "-m", "vlmeval.run", "--data", NAME, "--model", "qwen-mung", "--base-url", api, "--key",
                 API_KEY, "--local-media", "--mode", "infer", "--work-dir", str(tmp_path / "out"), "--api-nproc", "4",
                 "--max-tokens", str(MAX_NEW_TOKENS), "--temperature", "0"], tmp_path, **lmu)
    [predictions] = glob.glob(str(tmp_path / "out" / "qwen-mung" / f"qwen-mung_{NAME}.xlsx"))
    scored = run_harness([python, str(exported / "vlmeval" / f"{NAME}_dataset.py"), predictions], tmp_path, **lmu)
    replies = run_harness([python, "-c", "import json, sys; import pandas as pd; t = pd.read_excel(sys.argv[1], "
                           "dtype=str, keep_default_na=False); print(json.dumps(dict(zip(t.question_id, "
                           "t.prediction))))", predictions], tmp_path)
    assert json.loads(replies.strip().splitlines()[-1]) == project["answers"]
    assert json.loads(scored[scored.index("{"):])["accuracy"] == project["accuracy"]


def in_process(backbone, model_args, exported, tmp_path) -> dict:
    python = harness_python("vlmeval")
    out = run_harness([python, str(REPO / "tests" / "vlmeval_in_process.py"), backbone, NAME,
                       model_args["model_path"], model_args.get("model_base") or "-", str(tmp_path / "work"),
                       str(MAX_NEW_TOKENS)], tmp_path, LMUData=str(exported / "vlmeval"),
                      # xlsx, VLMEvalKit's default, writes control characters as _x0001_: a random model's
                      # replies have them
                      PRED_FORMAT="tsv")
    return json.loads(out.strip().splitlines()[-1])


def test_vlmeval_in_process_with_qwen_noise_vlm_agrees_with_the_project_scorer(checkpoint, exported, project,
                                                                               tmp_path):
    result = in_process("qwen", checkpoint, exported, tmp_path)
    assert result["predictions"] == project["answers"]
    assert result["scores"]["accuracy"] == project["accuracy"]


def test_vlmeval_in_process_with_llava_noise_vlm_agrees_with_the_project_scorer(exported, questions, tiny_world,
                                                                                tmp_path):
    llava = {"model_path": build_tiny_llava(tiny_world, tmp_path / "tiny-llava")}
    expected = project_answers("llava", llava, questions, tiny_world, tmp_path)
    result = in_process("llava", llava, exported, tmp_path)
    assert result["predictions"] == expected["answers"]
    assert result["scores"]["accuracy"] == expected["accuracy"]
