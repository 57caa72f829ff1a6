"""The terminal chat and the one-shot query, both backbones (issue 12, items 8, 9, 11): a message that cannot be
answered is refused with one line and the session goes on; a prompt too long for the context is refused with the
limit (Qwen printed nothing before); --noise-mode sample|mean on a base without a generator is refused."""

import io
import json

import pytest
from PIL import Image

from mung.chat import chat
from mung.eval import model_vqa_loader, run_query
from mung.generation import GenerationSettings
from mung.loading import LoadOptions, load
from mung.serve import cli
from qwen_builders import build_tiny_qwen
from test_eval_inference import build_tiny_llava

SETTINGS = GenerationSettings(temperature=0, max_new_tokens=3)


@pytest.fixture(scope="module", params=["llava", "qwen"])
def loaded(request, tiny_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}"
    build = build_tiny_llava if request.param == "llava" else build_tiny_qwen
    return load(build(tiny_world, folder), options=LoadOptions(device="cpu"))


def typed(monkeypatch, *lines):
    """What the user types at the chat's prompts (``input()``): each item in turn (an exception is raised), then
    end of input."""
    pending = list(lines)

    def fake_input(prompt=""):
        if not pending:
            raise EOFError
        item = pending.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setattr("builtins.input", fake_input)


def test_refused_messages_leave_the_session_going(loaded, monkeypatch):
    typed(monkeypatch,
          "Is there an <image> here?",                      # a literal image tag
          "caf\udce9 au lait?",                            # stdin decoded with surrogateescape: not UTF-8
          UnicodeDecodeError("utf-8", b"caf\xe9", 3, 4, "invalid continuation byte"),  # stdin decoded strictly
          "word " * 5000,                                   # far longer than the context
          "What colour is it?")
    out = io.StringIO()
    session = chat(loaded, [Image.new("RGB", (32, 32), "red")], SETTINGS, out=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[not sent]")]
    assert len(lines) == 4
    assert "<image> is where an image goes; this session's images are placed already" in lines[0]
    assert "character 4 of your message is not UTF-8 text" in lines[1]
    assert "byte 0xe9 of your message is not UTF-8; retype it" in lines[2]
    budget = loaded.context_len - SETTINGS.max_new_tokens
    assert (f"the model's context is {loaded.context_len} tokens, {SETTINGS.max_new_tokens} of them kept for the "
            f"reply (--max-new-tokens), so at most {budget}. Shorten it, or start a new chat.") in lines[3]
    assert [role for role, _ in session.turns] == ["user", "assistant"]
    assert session.turns[0][1].endswith("What colour is it?")


def test_a_query_too_long_for_the_context_is_refused_with_the_limit(loaded, monkeypatch, capsys):
    monkeypatch.setattr(run_query, "load_from_args", lambda args: loaded)
    with pytest.raises(ValueError, match=rf"makes the prompt \d+ tokens.*context is {loaded.context_len} tokens"):
        run_query.main(["--model-path", "unused", "--query", "word " * 5000, "--max_new_tokens", "3"])
    assert capsys.readouterr().out == ""  # nothing was generated or printed


def test_noise_modes_need_a_generator_for_qwen_eval_and_chat(tiny_world, tmp_path):
    """The tiny world's Qwen2.5-VL has no generator: sample or mean would label the base model's answers noised."""
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "text": "Hi"}) + "\n")
    for mode in ("sample", "mean"):
        with pytest.raises(ValueError, match=rf"--noise-mode {mode}: this checkpoint has no noise generator"):
            model_vqa_loader.main(["--model-path", tiny_world["qwen_model"], "--question-file", str(questions),
                                   "--answers-file", str(tmp_path / "a.jsonl"), "--device", "cpu",
                                   "--noise-mode", mode])
        with pytest.raises(ValueError, match=rf"--noise-mode {mode}: this checkpoint has no noise generator"):
            cli.main(["--model-path", tiny_world["qwen_model"], "--device", "cpu", "--noise-mode", mode])
    assert not (tmp_path / "a.jsonl").exists()
