"""The terminal chat and the one-shot query, both backbones (issue 12, items 8, 9, 11): a message that cannot be
answered is refused with one line and the session goes on; a prompt too long for the context is refused with the
limit (Qwen printed nothing before); --noise-mode sample|mean on a base without a generator is refused."""

import io
import json

import pytest
from PIL import Image

from mung.backbones import Prompt
from mung.chat import chat
from mung.eval import model_vqa_loader, run_query
from mung.generation import GenerationSettings
from mung.images import load_image
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


def test_an_unasked_reply_budget_shrinks_to_what_the_context_leaves_and_an_asked_one_is_checked(loaded, monkeypatch):
    """The CLI's default 512 new tokens on a model trained with a 256-token context answered nothing: the first
    message failed with a traceback. Unasked, the budget is what the context leaves; asked, it must fit."""
    from mung.context import PromptTooLong, check_fits

    encoded = loaded.backbone.encode(loaded, Prompt.question("What colour is it?", [Image.new("RGB", (32, 32))]))
    length = loaded.backbone.prompt_length(loaded, encoded)
    monkeypatch.setattr(loaded, "context_len", length + 5)
    unasked = GenerationSettings(temperature=0, max_new_tokens=512, fit_reply=True)
    assert check_fits(loaded, encoded, unasked).max_new_tokens == 5
    assert check_fits(loaded, encoded, GenerationSettings(max_new_tokens=3, fit_reply=True)).max_new_tokens == 3
    assert check_fits(loaded, encoded, GenerationSettings(max_new_tokens=5)).max_new_tokens == 5
    with pytest.raises(PromptTooLong, match=rf"context is {length + 5} tokens, 6 of them kept for the reply "
                                            rf"\(--max-new-tokens\), so at most {length - 1}\."):
        check_fits(loaded, encoded, GenerationSettings(max_new_tokens=6))
    monkeypatch.setattr(loaded, "context_len", length)
    with pytest.raises(PromptTooLong, match=f"context is {length} tokens, which leaves no room for a reply"):
        check_fits(loaded, encoded, unasked)


def test_the_cli_default_reply_fits_a_small_context_and_an_asked_one_too_long_fails_at_start(loaded, monkeypatch,
                                                                                               tmp_path, capsys):
    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), "red").save(image)
    monkeypatch.setattr(cli, "load_from_args", lambda args: loaded)
    encoded = loaded.backbone.encode(loaded, Prompt.question("What colour is it?", [load_image(str(image))]))
    monkeypatch.setattr(loaded, "context_len", loaded.backbone.prompt_length(loaded, encoded) + 3)
    typed(monkeypatch, "What colour is it?")
    session = cli.main(["--model-path", "unused", "--image-file", str(image), "--temperature", "0"])
    assert [role for role, _ in session.turns] == ["user", "assistant"]  # answered, at most 3 new tokens
    assert "[not sent]" not in capsys.readouterr().out
    typed(monkeypatch, "What colour is it?")
    with pytest.raises(ValueError, match=f"--max-new-tokens {loaded.context_len} leaves no room for a prompt"):
        cli.main(["--model-path", "unused", "--image-file", str(image), "--max-new-tokens", str(loaded.context_len)])
