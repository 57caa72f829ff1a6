"""The OpenAI-compatible API as a real server (a subprocess on a free loopback port) driven by the official ``openai``
client and by the exact request bodies VLMEvalKit's ``--base-url`` and lmms-eval's ``openai`` model send.

Every answer is checked against the model's greedy answer computed in this process through the shared answering
path; errors against OpenAI's error shape; the load test against the server's own count of answered requests.
"""

import json
import urllib.error
import urllib.request

import openai
import pytest
import torch

from benchmarks.serve_load import run_load, server_health
from benchmarks.servers import running_server
from mung.backbones import Prompt
from mung.images import load_image
from mung.loading import LoadOptions, load
from qwen_builders import build_tiny_qwen
from serve_helpers import API_KEY, REPO, data_url, first_eval_image, reference_answer
from test_eval_inference import build_tiny_llava

QUESTION = "What color is the shape?"
MAX_TOKENS_LIMIT = 24


@pytest.fixture(scope="module")
def llava_checkpoint(tiny_world, tmp_path_factory):
    torch.manual_seed(0)  # the generator starts random: the same answers every run
    return build_tiny_llava(tiny_world, tmp_path_factory.mktemp("serve") / "tiny-llava")


@pytest.fixture(scope="module")
def llava_loaded(llava_checkpoint):
    return load(llava_checkpoint, options=LoadOptions(device="cpu"))


@pytest.fixture(scope="module")
def llava_api(llava_checkpoint, tmp_path_factory):
    args = ["--model-path", llava_checkpoint, "--device", "cpu", "--api-key", API_KEY, "--queue-size", "8",
            "--max-new-tokens-limit", str(MAX_TOKENS_LIMIT), "--max-image-pixels", "100000"]
    log = tmp_path_factory.mktemp("logs") / "llava_api.log"
    with running_server("llava_noise.serve.api", args, log, ready_path="/health", cwd=REPO) as base_url:
        yield base_url


@pytest.fixture
def client(llava_api):
    return openai.OpenAI(base_url=llava_api + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def image(tiny_world):
    return first_eval_image(tiny_world)


def image_message(url: str, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def test_models_lists_the_served_checkpoint(client):
    assert [model.id for model in client.models.list()] == ["tiny-llava"]
    assert client.models.retrieve("tiny-llava").owned_by == "mung"


@pytest.mark.parametrize("noise_mode", [None, "off"])
def test_plain_answer_is_the_models_greedy_answer_with_usage(client, llava_loaded, image, noise_mode):
    extra = {"noise_mode": noise_mode} if noise_mode else None
    response = client.chat.completions.create(model="tiny-llava", messages=image_message(data_url(image)),
                                              max_tokens=6, temperature=0, seed=3, extra_body=extra)
    expected_mode = noise_mode or "mean"  # the tiny checkpoint's generator stores inference_mode "mean"
    turns = [("user", "<image>\n" + QUESTION)]
    assert response.choices[0].message.content == reference_answer(llava_loaded, turns, [image], 6, expected_mode)
    assert response.model_extra["noise_mode"] == expected_mode
    encoded = llava_loaded.backbone.encode(llava_loaded, Prompt(turns, [load_image(image)]))
    usage = response.usage
    assert usage.prompt_tokens == len(encoded.input_ids)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 6
    assert response.choices[0].finish_reason == ("length" if usage.completion_tokens == 6 else "stop")


def test_streaming_sends_the_shared_streamers_pieces(client, llava_loaded, image):
    messages = image_message(data_url(image))
    expected_pieces = []
    reference_answer(llava_loaded, [("user", "<image>\n" + QUESTION)], [image], 24, "mean", expected_pieces)
    plain = client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == [piece for piece in expected_pieces if piece]  # word by word, as the shared streamer cuts them
    assert len(pieces) >= 2  # the seeded tiny model says several words here
    assert "".join(pieces).strip() == plain.choices[0].message.content
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert len({c.id for c in chunks}) == 1


def test_multi_turn_and_system_messages_follow_the_shared_prompt_rules(client, llava_loaded, image):
    messages = [{"role": "system", "content": "Answer briefly."}] + image_message(data_url(image)) + [
        {"role": "assistant", "content": "red"}, {"role": "user", "content": "Are you sure?"}]
    response = client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=5, temperature=0)
    turns = [("user", "Answer briefly.\n\n<image>\n" + QUESTION), ("assistant", "red"), ("user", "Are you sure?")]
    assert response.choices[0].message.content == reference_answer(llava_loaded, turns, [image], 5, "mean")


def check_error_shape(body: dict, status_code: int, code: str) -> dict:
    error = body["error"] if "error" in body else body  # the openai client hands over the inner object
    assert set(error) == {"message", "type", "param", "code"}, body
    assert error["code"] == code and error["message"], (status_code, body)
    return error


@pytest.mark.parametrize("url, words", [("data:image/png;base64,AAAA", "not a readable image"),
                                         ("data:image/png;base64,!!notbase64", "invalid base64"),
                                         ("http://127.0.0.1:9/cat.png", "--allow-remote-images")])
def test_bad_image_is_a_400_and_the_server_keeps_serving(client, image, url, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-llava", messages=image_message(url), max_tokens=2)
    error = check_error_shape(caught.value.body, 400, caught.value.code)
    assert words in error["message"] and error["param"] == "messages"
    answer = client.chat.completions.create(model="tiny-llava", messages=image_message(data_url(image)), max_tokens=2)
    assert answer.choices[0].message.content is not None


def test_over_large_image_is_refused_naming_the_bound(client, tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (400, 400), (9, 9, 9)).save(big)  # 160,000 px > --max-image-pixels 100,000
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-llava", messages=image_message(data_url(str(big))), max_tokens=2)
    assert "over the limit of 100,000" in caught.value.body["message"]


def test_a_prompt_longer_than_the_context_is_a_400_plain_and_streamed(client, image):
    # ~3,000 tokens, over the tiny LLaVA's 2,048 (under the characters refused untokenised: test_serve_request_bounds)
    question = "Which shape is it? " * 600
    messages = [{"role": "user", "content": question}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=2)
    error = check_error_shape(caught.value.body, 400, caught.value.code)
    assert error["code"] == "context_length_exceeded" and "2,048" in error["message"].replace("2048", "2,048")
    stream = client.chat.completions.create(model="tiny-llava", messages=messages, max_tokens=2, stream=True)
    with pytest.raises(openai.APIError, match="context"):
        for _ in stream:
            pass
    answer = client.chat.completions.create(model="tiny-llava", messages=image_message(data_url(image)), max_tokens=2)
    assert answer.choices[0].message.content is not None  # the server keeps serving


def raw_get(url: str, headers: dict) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_missing_or_wrong_key_is_401_on_every_route(llava_api):
    wrong = openai.OpenAI(base_url=llava_api + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    check_error_shape(caught.value.body, 401, "invalid_api_key")
    for route in ("/v1/models", "/health", "/v1/no-such-route"):
        status, body = raw_get(llava_api + route, {})
        assert status == 401 and check_error_shape(body, 401, "invalid_api_key")
    status, body = raw_get(llava_api + "/v1/no-such-route", {"Authorization": f"Bearer {API_KEY}"})
    assert status == 404 and check_error_shape(body, 404, "not_found")


def post(url: str, payload: dict, headers: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def sse_content(raw: bytes) -> str:
    """Join the delta contents of an event stream the way VLMEvalKit's stream reader does ('data:' lines)."""
    parts = []
    for line in raw.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            choices = json.loads(line[5:]).get("choices") or [{}]
            parts.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(parts).strip()


def test_vlmevalkit_base_url_request_shape(llava_api, llava_loaded, image):
    """VLMEvalKit ``run.py --base-url URL/v1`` (LMDeployAPI over OpenAISDKWrapper): POST <base>/chat/completions with a
    Bearer key, image first as a JPEG data URL, ``n`` 1, ``max_tokens`` 32768 (its default), temperature 0.0; it reads
    ``choices[0].message.content``; ``--stream`` reads the event stream's deltas."""
    url = data_url(image, "JPEG")
    payload = {"model": "tiny-llava", "n": 1, "max_tokens": 2**15, "temperature": 0.0,
               "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                         {"type": "text", "text": QUESTION}]}]}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    status, raw = post(llava_api + "/v1/chat/completions", payload, headers)
    assert status == 200, raw
    answer = json.loads(raw)["choices"][0]["message"]["content"].strip()
    expected = reference_answer(llava_loaded, [("user", "<image>\n" + QUESTION)], [url], MAX_TOKENS_LIMIT, "mean")
    assert answer == expected  # max_tokens 32768 is capped to the server's --max-new-tokens-limit
    assert json.loads(raw)["usage"]["completion_tokens"] <= MAX_TOKENS_LIMIT
    status, raw = post(llava_api + "/v1/chat/completions", {**payload, "stream": True}, headers)
    assert status == 200 and sse_content(raw) == expected


def test_lmms_eval_openai_model_request_shape(llava_api, llava_loaded, image):
    """lmms-eval ``--model openai --model_args model=...,base_url=URL/v1``: the openai client's
    ``chat.completions.create`` with the question text first, then the image as a PNG data URL, ``max_tokens`` from
    the task's ``max_new_tokens`` and temperature 0; it reads ``choices[0].message.content`` and the usage counts."""
    client = openai.OpenAI(api_key=API_KEY, base_url=llava_api + "/v1", max_retries=0)
    url = data_url(image, "PNG")
    payload = {"model": "tiny-llava", "max_tokens": 8, "temperature": 0,
               "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                                         {"type": "image_url", "image_url": {"url": url}}]}]}
    response = client.chat.completions.create(**payload)
    expected = reference_answer(llava_loaded, [("user", QUESTION + "<image>")], [url], 8, "mean")
    assert response.choices[0].message.content == expected
    assert response.usage.prompt_tokens > 0 and 0 < response.usage.completion_tokens <= 8


def test_bounded_load_every_request_answered_once(llava_api):
    """40 requests, 8 at a time, on loopback: all answered 200 with distinct ids, the server counts exactly 40 more
    answered and none failed, and it is still healthy and idle afterwards."""
    before = server_health(llava_api, API_KEY)
    result = run_load(llava_api, requests=40, concurrency=8, max_tokens=4, api_key=API_KEY, timeout=300)
    assert [o.status for o in result.outcomes] == [200] * 40, [o.error for o in result.outcomes if o.status != 200]
    assert len({o.completion_id for o in result.outcomes}) == 40
    after = server_health(llava_api, API_KEY)
    assert after["answered"] - before["answered"] == 40 and after["failed"] == before["failed"]
    assert after["status"] == "ok" and after["running"] == 0 and after["waiting"] == 0


@pytest.fixture(scope="module")
def qwen_checkpoint(tiny_world, tmp_path_factory):
    return build_tiny_qwen(tiny_world, tmp_path_factory.mktemp("serve-qwen") / "tiny-qwen")


def test_qwen_checkpoint_is_served_the_same_way(qwen_checkpoint, image, tmp_path):
    loaded = load(qwen_checkpoint, options=LoadOptions(device="cpu"))
    args = ["--model-path", qwen_checkpoint, "--device", "cpu", "--noise-mode", "mean"]
    with running_server("qwen_noise.serve.api", args, tmp_path / "qwen_api.log", ready_path="/health",
                        cwd=REPO) as base_url:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
        assert [model.id for model in client.models.list()] == ["tiny-qwen"]
        messages = image_message(data_url(image))
        plain = client.chat.completions.create(model="tiny-qwen", messages=messages, max_tokens=6, temperature=0)
        streamed = client.chat.completions.create(model="tiny-qwen", messages=messages, max_tokens=6, temperature=0,
                                                  stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    expected = reference_answer(loaded, [("user", "<image>\n" + QUESTION)], [image], 6, "mean")
    assert plain.choices[0].message.content == expected and text.strip() == expected
    assert plain.usage.prompt_tokens == len(loaded.backbone.encode(
        loaded, Prompt([("user", "<image>\n" + QUESTION)], [load_image(image)])).input_ids)


def test_a_caller_that_goes_away_stops_the_generation(llava_loaded, image):
    """What a closed stream does (the API sets the job's cancel flag when its event stream is closed): generation
    ends at the next token instead of running to max_tokens."""
    from mung.generation import GenerationSettings
    from mung.serve.session import ChatJob, ModelWorker

    worker = ModelWorker(llava_loaded, max_waiting=1)
    job = ChatJob(turns=[("user", "<image>\n" + QUESTION)], images=[load_image(image)], seed=1,
                  settings=GenerationSettings(temperature=1.0, max_new_tokens=400))
    job.on_text = lambda _: job.cancelled.set()  # gone after the first piece
    reply = worker.chat(job).result(timeout=300)
    worker.close()
    assert reply.finish_reason == "stop" and reply.completion_tokens < 50, reply
