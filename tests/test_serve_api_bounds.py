"""The API server as a real process over the tiny LLaVA: what a request costs it (its RSS, read from /proc, when a
request holds many large images), where it says it serves (only once the port is its own; a busy port is one line
and exit 2), and answers in the client's terms (an integer penalty, a prompt over the context)."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from benchmarks.servers import free_port, running_server
from serve_helpers import API_KEY, REPO, data_url, first_eval_image
from test_image_bounds import one_bit_png
from test_serve_api import QUESTION, check_error_shape, image_message, llava_checkpoint  # noqa: F401 - a fixture

SIDE = 4096  # each image exactly at the default --max-image-pixels (4096 x 4096)
IMAGES = 10


def server_pid(port: int) -> int:
    """The pid of the ``python -m ...serve.api`` process started with ``--port port``."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    args = handle.read().split(b"\0")
            except OSError:
                continue
            if b"--port" in args and args[args.index(b"--port") + 1] == str(port).encode() and b"-m" in args:
                return int(entry)
    raise LookupError(f"no server process on port {port}")


def memory_kib(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as handle:
        return {line.split(":")[0]: int(line.split()[1]) for line in handle if line.startswith(("VmRSS", "VmHWM"))}


def post(url: str, payload: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_many_large_images_are_refused_before_decoding_and_cost_no_memory(llava_checkpoint, tmp_path):  # noqa: F811
    url = "data:image/png;base64," + base64.b64encode(one_bit_png(SIDE, SIDE)).decode()
    content = [{"type": "image_url", "image_url": {"url": url}} for _ in range(IMAGES)]
    payload = json.dumps({"model": "m", "max_tokens": 2,
                          "messages": [{"role": "user", "content": content + [{"type": "text", "text": "?"}]}]}).encode()
    args = ["--model-path", llava_checkpoint, "--device", "cpu"]  # the default per-image and per-request bounds
    with running_server("mung.serve.api", args, tmp_path / "api.log", ready_path="/health", cwd=REPO) as base_url:
        pid = server_pid(int(base_url.rsplit(":", 1)[1]))
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")  # the peak (VmHWM) starts again from now
        before = memory_kib(pid)
        status, body = post(base_url + "/v1/chat/completions", payload)
        after = memory_kib(pid)
    grown_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"{IMAGES} one-bit {SIDE}x{SIDE} PNGs in {len(payload):,} bytes: RSS {before['VmRSS'] / 1024:.0f} MiB "
          f"before, peak {after['VmHWM'] / 1024:.0f} MiB after ({grown_mib:+.0f} MiB)")
    assert status == 400 and body["error"]["code"] == "images_too_large", body
    assert "33,554,432" in body["error"]["message"]  # the default --max-request-pixels
    # Decoded, each image is 16 MiB as 1-bit pixels and 48 MiB as RGB: one alone would pass this bound.
    assert grown_mib < 16, (before, after)


def test_an_integer_penalty_and_a_long_prompt_are_answered_in_api_terms(llava_checkpoint, tiny_world, tmp_path):  # noqa: F811
    args = ["--model-path", llava_checkpoint, "--device", "cpu", "--api-key", API_KEY]
    with running_server("mung.serve.api", args, tmp_path / "api.log", ready_path="/health", cwd=REPO) as base_url:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        answer = client.chat.completions.create(model="m", messages=image_message(data_url(first_eval_image(tiny_world))),
                                                max_tokens=3, temperature=0, extra_body={"repetition_penalty": 2})
        assert answer.choices[0].message.content is not None
        # ~3,000 tokens: under the text bound, over the tiny LLaVA's 2,048-token context once tokenised.
        long_text = [{"role": "user", "content": "Which shape is it? " * 600}]
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="m", messages=long_text, max_tokens=5)
    error = check_error_shape(caught.value.body, 400, "context_length_exceeded")
    assert "'max_tokens'" in error["message"] and "--" not in error["message"], error["message"]


def start_api(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mung.serve.api", *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)


def test_the_server_says_where_it_serves_only_once_the_port_is_its_own(llava_checkpoint, tmp_path):  # noqa: F811
    port = free_port()
    log_path = tmp_path / "api.log"
    with open(log_path, "w") as log:
        process = start_api(["--model-path", llava_checkpoint, "--device", "cpu", "--port", str(port)], log)
    try:
        deadline = time.monotonic() + 300
        while f"127.0.0.1:{port}/v1" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.01)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the moment it is said, it is so
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.parametrize("module", ["mung.serve.api", "mung.serve.web"])
def test_a_busy_port_is_one_line_and_exit_2_before_loading(tmp_path, module):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", module, "--model-path", str(tmp_path / "never-loaded"),
                                 "--port", str(port)], capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith(f"error: port {port} on 127.0.0.1 is in use"), result.stderr
    assert "Traceback" not in result.stderr and "Serving" not in result.stdout
