"""The API's request reading, error shapes and queue, in this process (no model needed for these paths): every
expected value is written out by hand from OpenAI's documented shapes and the shared prompt rules."""

import base64
import io
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from mung.serve.api import ChatService, create_app
from mung.serve.openai_schema import APIError, ImagePolicy, parse_chat_request
from mung.serve.session import ModelWorker, ServerBusy

TEXT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def png_url(size=(8, 8)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def parse(body, policy=None, limit=16):
    return parse_chat_request(body, policy or ImagePolicy(max_pixels=10_000), limit)


def test_images_stand_where_their_parts_stand_and_system_text_goes_first():
    body = {"model": "m", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": png_url()}},
                                     {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A square."},
        {"role": "user", "content": [{"type": "image_url", "image_url": png_url((4, 4))}]},
    ]}
    job = parse(body).job
    assert job.turns == [("user", "Be brief.\n\nLook:<image>\nWhat is it?"), ("assistant", "A square."),
                         ("user", "<image>")]
    assert [image.size for image in job.images] == [(8, 8), (4, 4)]


def test_settings_follow_openai_defaults_and_the_server_cap():
    settings = parse(TEXT).job.settings
    assert (settings.temperature, settings.top_p, settings.max_new_tokens) == (1.0, None, 16)
    body = {**TEXT, "temperature": 0, "top_p": 0.5, "max_tokens": 100, "top_k": 5, "repetition_penalty": 1.1}
    settings = parse(body).job.settings
    assert (settings.temperature, settings.top_p, settings.max_new_tokens, settings.top_k,
            settings.repetition_penalty) == (0, 0.5, 16, 5, 1.1)
    assert parse({**TEXT, "max_tokens": 100, "max_completion_tokens": 3}).job.settings.max_new_tokens == 3
    # Unset, the reply may have what the context leaves (up to the cap); asked for, it must fit or is refused.
    assert parse(TEXT).job.settings.fit_reply and not parse({**TEXT, "max_tokens": 3}).job.settings.fit_reply
    parsed = parse({**TEXT, "stream": True, "stream_options": {"include_usage": True}, "seed": 2**40 + 7,
                    "stop": ["\n", ""], "noise_mode": "off"})
    assert (parsed.stream, parsed.include_usage, parsed.job.seed, parsed.job.stop, parsed.job.noise_mode) == (
        True, True, 7, ["\n"], "off")


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"tools": [{"type": "function"}]}, "tools"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"), ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"temperature": "hot"}, "temperature"), ({"temperature": 3}, "temperature"), ({"temperature": True}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"noise_mode": "loud"}, "noise_mode"), ({"model": None}, "model"), ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "see <image>"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]}, "messages"),
])
def test_bad_fields_are_400_naming_the_field(extra, param):
    with pytest.raises(APIError) as caught:
        parse({**TEXT, **extra})
    assert caught.value.status == 400 and caught.value.param == param, caught.value.message


def test_image_urls_data_only_unless_the_server_allows_more(tmp_path):
    path = tmp_path / "cat.png"
    Image.new("RGB", (6, 6)).save(path)
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"file://{path}"}}, {"type": "text", "text": "q"}]}]}
    with pytest.raises(APIError, match="--allow-local-images"):
        parse(body)
    assert parse(body, ImagePolicy(allow_local=True)).job.images[0].size == (6, 6)
    remote = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://127.0.0.1:9/x.png"}}]}]}
    with pytest.raises(APIError, match="--allow-remote-images") as caught:
        parse(remote)
    assert caught.value.code == "remote_image_refused"
    big = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_url((200, 100))}}]}]}
    with pytest.raises(APIError, match="200x100 = 20,000 pixels, over the limit of 10,000"):
        parse(big)


def stub_loaded():
    """What the API reads of a loaded model before any generation: a model without a noise generator."""
    return SimpleNamespace(model=torch.nn.Linear(2, 2), noise_mode="off", model_name="stub",
                           backbone=SimpleNamespace(name="stub"))


@pytest.fixture
def stub_api():
    worker = ModelWorker(stub_loaded(), max_waiting=1)
    service = ChatService(worker, "stub", ImagePolicy(max_pixels=10_000), 16, max_request_bytes=50_000)
    yield worker, TestClient(create_app(service))
    worker.close()


def error_of(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    return error


def test_a_full_queue_is_answered_429_at_once(stub_api):
    worker, client = stub_api
    gate = threading.Event()
    running = worker.submit(gate.wait)
    deadline = time.monotonic() + 10
    while worker.running == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = worker.submit(lambda: "queued")
    try:
        response = client.post("/v1/chat/completions", json=TEXT)
        error = error_of(response, 429, "queue_full")
        assert error["type"] == "server_busy" and response.headers["retry-after"] == "1"
        with pytest.raises(ServerBusy):
            worker.submit(lambda: None)
    finally:
        gate.set()
    assert running.result(timeout=10) is True and waiting.result(timeout=10) == "queued"


def test_noise_needs_a_generator_and_other_errors_keep_openai_shape(stub_api):
    _, client = stub_api
    error = error_of(client.post("/v1/chat/completions", json={**TEXT, "noise_mode": "sample"}), 400,
                     "no_noise_generator")
    assert "no noise generator" in error["message"] and error["param"] == "noise_mode"
    error_of(client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}),
             400, None)
    error_of(client.post("/v1/chat/completions", content=b"x" * 60_000), 413, "request_too_large")
    error_of(client.get("/v1/models/other"), 404, "model_not_found")
    error_of(client.get("/v2/nothing"), 404, "not_found")
    assert client.get("/v1/models").json()["data"][0]["id"] == "stub"  # no --api-key: no key needed


def test_the_worker_runs_jobs_in_order_and_survives_a_failing_one():
    worker = ModelWorker(stub_loaded(), max_waiting=4)
    seen = []
    first = worker.submit(lambda: seen.append(1))
    failing = worker.submit(lambda: 1 / 0)
    last = worker.submit(lambda: seen.append(2) or "done")
    assert last.result(timeout=10) == "done" and first.result(timeout=10) is None
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    assert seen == [1, 2] and (worker.answered, worker.failed) == (2, 1)
    worker.close()
