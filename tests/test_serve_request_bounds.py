"""What one API request may cost, and what it is answered, over a stub model (no model needed: each request here is
refused or dropped before a model would run): the body counted as it arrives, the JSON's depth and numbers, the text
against the context, the images' count and pixels from their headers and the line's places before any decoding, and
clients that go away. Raw-socket cases run a real uvicorn server in a thread on a free loopback port."""

import base64
import io
import json
import logging
import select
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from transformers import RepetitionPenaltyLogitsProcessor

from benchmarks.servers import free_port
from mung.serve.api import ChatService, create_app
from mung.serve.openai_schema import ImagePolicy, parse_chat_request
from mung.serve.session import ModelWorker
from test_serve_openai_schema import TEXT, error_of, png_url, stub_loaded

BODY_LIMIT = 50_000
POLICY = ImagePolicy(max_pixels=10_000, max_images=3, max_total_pixels=15_000)


def service_of(worker, body_limit=BODY_LIMIT, **extra) -> ChatService:
    return ChatService(worker, "stub", POLICY, 16, max_request_bytes=body_limit, **extra)


@pytest.fixture
def worker():
    worker = ModelWorker(stub_loaded(), max_waiting=1)
    yield worker
    worker.close()


@pytest.fixture
def client(worker):
    return TestClient(create_app(service_of(worker, 1_000_000, max_prompt_chars=1000, context_len=100)))


@pytest.fixture
def decoded(monkeypatch):
    """Every image PIL decodes in this test (its ``load``), by size: reading a header decodes nothing."""
    sizes = []
    real_load = ImageFile.ImageFile.load

    def load(image):
        sizes.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def image_body(*sizes) -> dict:
    content = [{"type": "image_url", "image_url": {"url": png_url(size)}} for size in sizes]
    return {"model": "m", "messages": [{"role": "user", "content": content + [{"type": "text", "text": "q"}]}]}


def occupy(worker: ModelWorker) -> threading.Event:
    """Fill every place of a ``max_waiting=1`` worker: one job running (until the returned gate opens), one waiting."""
    gate = threading.Event()
    worker.submit(gate.wait)
    deadline = time.monotonic() + 10
    while worker.running == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.submit(lambda: None)
    return gate


# --- images: counted and measured from their headers before any is decoded -------------------------------------------
def test_too_many_images_are_refused_before_any_is_read_or_decoded(client, decoded):
    error = error_of(client.post("/v1/chat/completions", json=image_body(*[(4, 4)] * 4)), 400, "too_many_images")
    assert error["param"] == "messages" and "at most 3" in error["message"] and "--max-images-per-request" in error["message"]
    assert decoded == []


def test_images_over_the_request_pixel_total_are_refused_from_their_headers(client, decoded):
    # 100x80 = 8,000 each: under the 10,000 per image, 16,000 together over the 15,000 per request.
    error = error_of(client.post("/v1/chat/completions", json=image_body((100, 80), (100, 80))), 400, "images_too_large")
    assert "15,000" in error["message"] and error["param"] == "messages"
    assert decoded == []


def test_a_full_line_refuses_before_decoding(worker, client, decoded):
    gate = occupy(worker)
    try:
        error_of(client.post("/v1/chat/completions", json=image_body((50, 50))), 429, "queue_full")
    finally:
        gate.set()
    assert decoded == []


def test_an_image_over_the_pixel_bound_is_named_too_large_not_corrupt(client):
    error = error_of(client.post("/v1/chat/completions", json=image_body((200, 100))), 400, "invalid_image")
    assert "200x100 = 20,000 pixels, over the limit of 10,000" in error["message"]
    assert "corrupt" not in error["message"] and "cannot be decoded" not in error["message"]


def test_a_bad_image_is_described_once(client):
    body = image_body()
    body["messages"][0]["content"].insert(0, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})
    error = error_of(client.post("/v1/chat/completions", json=body), 400, "invalid_image")
    assert error["message"].count("messages[0].content[0]") == 1, error["message"]
    assert error["message"].count("not a readable image") == 1


# --- text, numbers and JSON ----------------------------------------------------------------------------------------
def test_a_text_the_context_cannot_hold_is_refused_before_the_worker(worker, client):
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 1001}]}
    error = error_of(client.post("/v1/chat/completions", json=body), 400, "context_length_exceeded")
    assert error["param"] == "messages" and "1,001 characters" in error["message"]
    assert (worker.answered, worker.failed, worker.dropped) == (0, 0, 0)  # the stub would fail any job it ran


def test_a_reply_budget_of_the_whole_context_is_refused_in_api_terms(worker):
    service = service_of(worker, max_prompt_chars=1000, context_len=10)
    response = TestClient(create_app(service)).post("/v1/chat/completions", json={**TEXT, "max_completion_tokens": 12})
    error = error_of(response, 400, "context_length_exceeded")
    assert error["param"] == "max_completion_tokens" and "10 tokens" in error["message"]
    assert "--" not in error["message"] and "at most 0" not in error["message"]
    assert worker.failed == 0


@pytest.mark.parametrize("raw, param", [
    (b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "messages"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"7" * 5000 + b"}",
     "max_tokens"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": -' + b"9" * 5000 + b"}", "seed"),
    (json.dumps({**TEXT, "stream": "false"}).encode(), "stream"),
    (json.dumps({**TEXT, "stream": True, "stream_options": {"include_usage": "yes"}}).encode(), "include_usage"),
])
def test_hostile_json_is_a_400_naming_the_field(client, raw, param):
    response = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert error_of(response, 400, None)["param"] == param


def test_an_image_placeholder_in_api_text_gets_an_api_message(client):
    body = {"model": "m", "messages": [{"role": "user", "content": "what is <image> here?"}]}
    error = error_of(client.post("/v1/chat/completions", json=body), 400, "reserved_text")
    assert "image_url" in error["message"] and "'value'" not in error["message"] and error["param"] == "messages"


def test_an_integer_where_a_number_goes_is_taken_as_a_float():
    settings = parse_chat_request({**TEXT, "repetition_penalty": 2, "top_p": 1, "temperature": 1}, POLICY, 16
                                  ).job.settings
    assert settings.repetition_penalty == 2.0
    RepetitionPenaltyLogitsProcessor(settings.repetition_penalty)  # transformers' own check: a float only
    assert isinstance(settings.top_p, float) and isinstance(settings.temperature, float)


# --- the body as it arrives, and clients that go away (a real server) ----------------------------------------------
@pytest.fixture
def live(worker):
    """(host, port) of a uvicorn server over the stub service, in a thread."""
    port = free_port()
    config = uvicorn.Config(create_app(service_of(worker)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def post_head(length_header: str) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{length_header}\r\n\r\n"
            ).encode()


def read_response(conn: socket.socket) -> tuple[str, bytes]:
    """(status line and headers, body) of one HTTP response with a Content-Length."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += conn.recv(65536)
    head, body = raw.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return head.decode(), body


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(live):
    chunk = 8_192
    with socket.create_connection(live, timeout=10) as conn:
        conn.sendall(post_head("Transfer-Encoding: chunked"))
        sent, answered = 0, False
        while sent < 20 * BODY_LIMIT and not answered:
            try:
                conn.sendall(f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
            answered = bool(select.select([conn], [], [], 0.5 if sent > BODY_LIMIT else 0)[0])
        head, body = read_response(conn)
    assert head.startswith("HTTP/1.1 413"), head
    assert sent <= BODY_LIMIT + 2 * chunk, sent  # answered while the body was still coming, never read to its end
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_a_client_that_leaves_mid_upload_is_logged_in_one_line(live, caplog):
    with caplog.at_level(logging.INFO):
        with socket.create_connection(live, timeout=10) as conn:
            conn.sendall(post_head("Content-Length: 40000") + b'{"model": "m", "messages": [')
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while "went away" not in caplog.text and "closed the connection" not in caplog.text \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    said = [r for r in caplog.records if r.name.startswith(("mung", "uvicorn"))]
    assert [r.getMessage() for r in said] == [
        "POST /v1/chat/completions: the client closed the connection while sending its request; nothing was answered."]
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True])
def test_a_waiting_request_whose_client_left_is_never_generated(worker, live, caplog, stream):
    gate = threading.Event()
    worker.submit(gate.wait)
    body = json.dumps({**TEXT, "stream": stream}).encode()
    with caplog.at_level(logging.INFO):
        with socket.create_connection(live, timeout=10) as conn:
            conn.sendall(post_head(f"Content-Length: {len(body)}") + body)
            deadline = time.monotonic() + 10
            while worker.waiting == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert worker.waiting == 1
        deadline = time.monotonic() + 10
        while "went away" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    gate.set()
    deadline = time.monotonic() + 10
    while worker.dropped + worker.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The stub model fails any chat job it runs: a run job would show as failed.
    assert (worker.failed, worker.dropped, worker.answered) == (0, 1, 1)
