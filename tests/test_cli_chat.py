"""The terminal chat (llava_noise.serve.cli) on the tiny world, driven through stdin."""

import ast
import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from llava_noise.adapter import infer_conv_mode
from mung.generation import StopStringStreamer
from mung.serve import cli
from test_eval_inference import build_tiny_llava

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAVA_V1_SYSTEM = "A chat between a curious human"
VICUNA_V1_SYSTEM = "A chat between a curious user"


@pytest.fixture(scope="module")
def chat_checkpoint(tiny_world, tmp_path_factory):
    """Tiny checkpoint whose config records template llava_v1, in a folder whose name suggests another one."""
    path = build_tiny_llava(tiny_world, tmp_path_factory.mktemp("cli") / "llava-v1.6-34b-chatml-mpt")
    config_file = os.path.join(path, "config.json")
    config = json.load(open(config_file))
    config["version"] = "llava_v1"
    json.dump(config, open(config_file, "w"))
    return path


@pytest.fixture(scope="module")
def image_file(tiny_world):
    first = json.loads(open(tiny_world["eval_questions"]).readline())
    return os.path.join(tiny_world["image_folder"], first["image"])


def debug_records(stdout):
    # split("\n"), not splitlines(): a random tiny model may emit \x1c-\x1e, which splitlines() treats as breaks.
    return [ast.literal_eval(line) for line in stdout.split("\n") if line.startswith("{'prompt'")]


def test_cli_streams_keeps_history_and_exits_on_empty_line(chat_checkpoint, image_file):
    done = subprocess.run(
        [sys.executable, "-m", "llava_noise.serve.cli", "--model-path", chat_checkpoint, "--image-file", image_file,
         "--device", "cpu", "--temperature", "0", "--max-new-tokens", "6", "--debug"],
        input="What shape is it?\nAnd its colour?\n\n", capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = debug_records(done.stdout)
    assert first["prompt"].startswith(LLAVA_V1_SYSTEM)  # from config.json, not the folder name
    assert first["prompt"].endswith("USER: <image>\nWhat shape is it? ASSISTANT:")
    assert second["prompt"] == first["prompt"] + " " + first["outputs"] + "</s>USER: And its colour? ASSISTANT:"
    streamed = [line.split("ASSISTANT: ", 1)[1] for line in done.stdout.split("\n")
                if line.startswith("USER: ASSISTANT: ")]  # input() prompt, then the streamed reply
    assert [s.strip() for s in streamed] == [first["outputs"], second["outputs"]]
    assert done.stdout.rstrip().endswith("exit...")


def run_in_process(monkeypatch, capsys, stdin_text, argv):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    session = cli.run(cli.parse_args(argv))
    return session, capsys.readouterr().out


def test_cli_end_of_input_exits_cleanly(chat_checkpoint, monkeypatch, capsys):
    session, out = run_in_process(monkeypatch, capsys, "Hello there",
                                  ["--model-path", chat_checkpoint, "--device", "cpu", "--max-new-tokens", "3"])
    assert len(session.turns) == 2 and session.turns[0] == ("user", "Hello there")  # text-only: no image token
    assert out.rstrip().endswith("exit...")


def test_cli_conv_mode_flag_overrides_checkpoint(chat_checkpoint, monkeypatch, capsys):
    session, _ = run_in_process(monkeypatch, capsys, "Hi\n\n", ["--model-path", chat_checkpoint, "--device", "cpu",
                                                                "--max-new-tokens", "2", "--conv-mode", "vicuna_v1"])
    assert session.last_prompt.startswith(VICUNA_V1_SYSTEM)


def test_cli_unreadable_image_fails_before_loading(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(SystemExit) as exc:
        cli.run(cli.parse_args(["--model-path", str(tmp_path / "never-loaded"), "--image-file", str(bad)]))
    assert "broken.png cannot be decoded: it is not a readable image" in str(exc.value)
    with pytest.raises(SystemExit, match="image .*missing.png does not exist"):
        cli.run(cli.parse_args(["--model-path", str(tmp_path), "--image-file", str(tmp_path / "missing.png")]))


def test_cli_unreachable_url_fails_fast_with_clear_message(tmp_path):
    start = time.monotonic()
    with pytest.raises(SystemExit, match="cannot download image http://images.invalid/cat.png"):
        cli.run(cli.parse_args(["--model-path", str(tmp_path), "--image-file", "http://images.invalid/cat.png"]))
    assert time.monotonic() - start < 15


def test_stream_never_prints_the_stop_string(tiny_world):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world["llava_llm"])
    out = io.StringIO()
    streamer = StopStringStreamer(tokenizer, "###", out=out, skip_special_tokens=True)
    streamer.put(torch.tensor([[]], dtype=torch.long))  # generate() first sends the (empty) prompt
    for token in tokenizer("red circle ### USER: more", add_special_tokens=False)["input_ids"]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert out.getvalue().strip() == "red circle"
    assert "#" not in out.getvalue()


def test_conv_mode_comes_from_config_and_tokenizer_not_folder():
    def model(**config):
        return SimpleNamespace(config=SimpleNamespace(**config))

    plain = SimpleNamespace(get_vocab=lambda: {"a": 0}, chat_template=None)
    chatml = SimpleNamespace(get_vocab=lambda: {"<|im_start|>": 5}, chat_template=None)
    assert infer_conv_mode(model(version="llava_llama_2", _name_or_path="llava-mpt"), plain) == "llava_llama_2"
    assert infer_conv_mode(model(version="not-a-template"), plain) == "vicuna_v1"
    assert infer_conv_mode(model(), chatml) == "chatml_direct"
    assert infer_conv_mode(model(_name_or_path="llava-v1.6-34b"), plain) == "vicuna_v1"
