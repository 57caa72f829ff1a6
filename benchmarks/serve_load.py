"""Benchmark 4: the OpenAI-compatible API under a bounded load on loopback.

Starts ``python -m mung.serve.api`` on a checkpoint (a real subprocess bound to 127.0.0.1), sends ``--requests``
chat completions with one image each from ``--concurrency`` client threads at once, and reports every request's
outcome and latency (send to full response): p50 / p95 / max, throughput, and the server's own count of answered
requests afterwards (each request must be answered exactly once: none lost, none doubled). The model answers one
request at a time; the others wait in the server's queue (``--queue-size``, at least ``--concurrency`` - 1 here, so
none is refused).

    python -m benchmarks.serve_load --model-path outputs/quickstart/llava/mung --model-base outputs/quickstart/llava/base
    python -m benchmarks.serve_load --model-path <ckpt> --requests 40 --concurrency 8 --max-tokens 8 --out l.md
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from PIL import Image, ImageDraw

from benchmarks.report import Publisher, add_output_flags, check_output_flags, table
from benchmarks.servers import running_server


@dataclass
class Outcome:
    """One request: HTTP status, seconds from send to the full response, the completion id (None on error)."""

    status: int
    seconds: float
    completion_id: Optional[str]
    error: str = ""


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [o.seconds for o in self.outcomes if o.status == 200]

    @property
    def ok(self) -> int:
        return sum(o.status == 200 for o in self.outcomes)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``: the smallest value with at least q% at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def scene_data_url(size: int = 112) -> str:
    """A data URL of a small drawn scene (a red circle on grey), like the tiny world's images."""
    image = Image.new("RGB", (size, size), (200, 200, 200))
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(220, 40, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat_body(max_tokens: int, index: int) -> dict:
    question = ("What color is the shape?", "What shape is it?", "How many shapes are there?")[index % 3]
    return {"model": "mung", "max_tokens": max_tokens, "temperature": 0, "seed": index,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": scene_data_url()}},
                                                      {"type": "text", "text": question}]}]}


def post_json(url: str, body: dict, api_key: Optional[str], timeout: float) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def one_request(base_url: str, body: dict, api_key: Optional[str], timeout: float) -> Outcome:
    start = time.perf_counter()
    try:
        status, payload = post_json(base_url + "/v1/chat/completions", body, api_key, timeout)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as err:
        return Outcome(0, time.perf_counter() - start, None, f"{type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    if status != 200:
        return Outcome(status, seconds, None, str(payload.get("error", payload))[:200])
    return Outcome(status, seconds, payload.get("id"))


def run_load(base_url: str, requests: int, concurrency: int, max_tokens: int = 8, api_key: Optional[str] = None,
             timeout: float = 300.0) -> LoadResult:
    """Send ``requests`` chat completions, ``concurrency`` at a time; every one is waited for (bounded by
    ``timeout`` each)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(one_request, base_url, chat_body(max_tokens, i), api_key, timeout)
                   for i in range(requests)]
        outcomes = [future.result() for future in futures]
    return LoadResult(outcomes=outcomes, wall_seconds=time.perf_counter() - start)


def server_health(base_url: str, api_key: Optional[str] = None) -> dict:
    request = urllib.request.Request(base_url + "/health",
                                     headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def render(result: LoadResult, requests: int, concurrency: int, answered: int) -> str:
    latencies = result.latencies
    cells = [requests, concurrency, result.ok, requests - result.ok, answered]
    if latencies:
        cells += [f"{percentile(latencies, 50):.3f}", f"{percentile(latencies, 95):.3f}", f"{max(latencies):.3f}",
                  f"{result.ok / result.wall_seconds:.2f}"]
    else:
        cells += ["-"] * 4
    headers = ["requests", "concurrent", "answered 200", "failed", "server count", "p50 s", "p95 s", "max s",
               "requests/s"]
    return table(headers, [cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True, help="checkpoint to serve (any kind the loader reads)")
    parser.add_argument("--model-base", default=None,
                        help="base model of a LoRA, projector-only or generator-only checkpoint")
    parser.add_argument("--requests", type=int, default=40, help="requests sent in all")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens of each request")
    parser.add_argument("--device", default="cpu", help="device the server loads the model on")
    add_output_flags(parser)
    args = parser.parse_args()
    check_output_flags(parser, args)
    server_args = ["--model-path", args.model_path, "--device", args.device, "--queue-size", str(args.concurrency)]
    server_args += ["--model-base", args.model_base] if args.model_base else []
    log = os.path.join(tempfile.gettempdir(), "mung_serve_load_server.log")
    with running_server("mung.serve.api", server_args, log, ready_path="/health") as base_url:
        health = server_health(base_url)
        result = run_load(base_url, args.requests, args.concurrency, args.max_tokens)
        answered = server_health(base_url)["answered"] - health["answered"]
    body = (f"## Serving: OpenAI-compatible API under load, {health['model']}, {args.device}\n\n"
            + render(result, args.requests, args.concurrency, answered)
            + f"\n\nEach request: one 112x112 PNG as a data URL and a short question, greedy, {args.max_tokens} new "
            "tokens at most; latency = send to full response, so it includes the time spent waiting in the queue "
            f"behind up to {args.concurrency - 1} others (the model answers one at a time). 'server count' = requests "
            f"the server says it answered during the run. Load average (1 min) {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores.")
    publisher = Publisher(args)
    errors = [o.error for o in result.outcomes if o.status != 200]
    if errors:
        print("errors:", *errors[:5], sep="\n  ")
    publisher.publish(f"serve_load_{args.device}", body)


if __name__ == "__main__":
    main()
