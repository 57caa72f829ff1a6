"""OpenAI's chat-completions format: reading a request body into a ``ChatJob``, and writing responses, stream
chunks and errors in the shapes OpenAI's clients expect.

Honoured request fields: ``messages`` (roles ``system``/``developer``, ``user``, ``assistant``; content a string or
a list of ``text`` and ``image_url`` parts), ``temperature`` (default 1, as OpenAI), ``top_p``, ``top_k``,
``repetition_penalty``, ``max_tokens`` / ``max_completion_tokens`` (capped at the server's limit), ``seed``,
``stop``, ``stream``, ``stream_options.include_usage``, ``n`` (1 only) and MuNG's own ``noise_mode``
(``sample | mean | off``). ``model`` is required but not matched: the server has one model and names it in every
response. Fields that would change the answer in ways this server does not do (``n`` > 1, ``logprobs``, tools,
JSON response formats, frequency/presence penalties) are refused with a 400 naming the field; other fields are
ignored.

Where images go: as in ``mung.vlmeval_base.MungVLM.message_to_turn``, an ``<image>`` stands where each image part
stands in its message, with a newline before text that follows an image. System text is put in front of the first
user message (the backbones' templates have their own system prompt).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from PIL import Image

from ..backbones import IMAGE_PLACEHOLDER
from ..images import (REMOTE_PREFIXES, ImageLoadError, base64_image_bytes, decode_image_bytes, image_size,
                      read_image_source)
from ..flag_choices import NOISE_MODES
from ..vlmeval_base import MungVLM

if TYPE_CHECKING:  # the model code (torch) loads when a request is read, not when the server's flags are
    from ..generation import GenerationSettings
    from .session import ChatJob, ChatReply

SYSTEM_ROLES = ("system", "developer")
REFUSED_TRUE = ("logprobs", "top_logprobs", "tools", "tool_choice", "functions", "function_call")


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass
class ImagePolicy:
    """Which image URLs a request may use: data URLs always; ``http(s)`` only with ``allow_remote`` (the server
    would fetch them, within ``max_remote_bytes`` and ``remote_timeout`` seconds); ``file://`` paths only with
    ``allow_local`` (the server reads its own disk: regular files within ``max_remote_bytes`` too). How many images one request may hold (``max_images``), and
    how many pixels each (``max_pixels``) and all together (``max_total_pixels``): checked from the images'
    headers, before a pixel is decoded."""

    allow_remote: bool = False
    allow_local: bool = False
    max_pixels: Optional[int] = None
    max_images: Optional[int] = None
    max_total_pixels: Optional[int] = None
    max_remote_bytes: Optional[int] = None
    remote_timeout: float = 10.0


@dataclass
class EncodedImage:
    """An image of a request, read (base64 or downloaded) and measured from its header but not yet decoded."""

    where: str
    data: bytes
    size: tuple[int, int]


@dataclass
class ParsedRequest:
    """A checked request, its images in three steps, each after the bounds of the one before were checked: named
    (``image_urls``: where in the messages, URL), read and measured (``read_images``: ``encoded_images``), decoded
    (``decode_images``: ``job.images``). ``budget_field`` is the reply-budget field it used (for messages in the
    client's terms)."""

    job: ChatJob
    stream: bool
    include_usage: bool
    image_urls: list[tuple[str, Any]]
    budget_field: str = "max_tokens"
    encoded_images: list[EncodedImage] = field(default_factory=list)

    def text_chars(self) -> int:
        return sum(len(text) for _, text in self.job.turns)

    def read_images(self, policy: ImagePolicy) -> None:
        """Read (base64 decoded or downloaded within bounds) and measure the images from their headers: blocking work,
        nothing decoded."""
        self.encoded_images = _encoded_images(self.image_urls, policy)

    def decode_images(self) -> None:
        """Decode the images into the job: the expensive step, after every bound was checked."""
        self.job.images = [_decoded(image) for image in self.encoded_images]


# ------------------------------------------------------------------------------------------------ reading
def _number(body: dict, name: str, low: float, high: float, integer: bool = False) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad_request(f"'{name}' must be {'an integer' if integer else 'a number'}, got {value!r:.60}.", name)
    if not low <= value <= high:
        raise bad_request(f"'{name}' must be between {low} and {high}, got {value}.", name)
    return value


def _stop_strings(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
        raise bad_request("'stop' must be a string or a list of up to 4 strings.", "stop")
    return [s for s in stops if s]


def _refuse_unsupported(body: dict) -> None:
    """400 for fields whose effect this server does not give (rather than silently answering differently)."""
    n = _number(body, "n", 1, 128, integer=True)
    if n is not None and n != 1:
        raise bad_request("'n' must be 1: this server returns one choice per request.", "n")
    for name in REFUSED_TRUE:
        if body.get(name):
            raise bad_request(f"'{name}' is not supported by this server; leave it out.", name)
    for name in ("frequency_penalty", "presence_penalty"):
        if body.get(name):
            raise bad_request(f"'{name}' is not supported; use 'repetition_penalty' (> 1 discourages repeats).", name)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise bad_request("'response_format' other than {'type': 'text'} is not supported.", "response_format")


def _settings(body: dict, max_new_tokens_limit: int) -> GenerationSettings:
    from ..generation import GenerationSettings

    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1)
    if top_p == 0:
        raise bad_request("'top_p' must be above 0 (use temperature 0 for greedy answers).", "top_p")
    top_k = _number(body, "top_k", 0, 1_000_000, integer=True)
    penalty = _number(body, "repetition_penalty", 0.01, 100)
    max_tokens = _number(body, budget_field(body), 1, 2**31, integer=True)
    budget = max_new_tokens_limit if max_tokens is None else min(int(max_tokens), max_new_tokens_limit)
    # OpenAI takes an integer wherever a number goes (2 for 2.0); transformers' processors want floats.
    return GenerationSettings(temperature=1.0 if temperature is None else float(temperature),
                              top_p=None if top_p is None else float(top_p), max_new_tokens=budget, top_k=top_k,
                              repetition_penalty=None if penalty is None else float(penalty),
                              fit_reply=max_tokens is None)  # unset: what the context leaves, up to the limit


def budget_field(body: dict) -> str:
    return "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"


def _flag(body: dict, name: str, where: Optional[dict] = None) -> bool:
    """A boolean field: true, false or absent; a string such as "false" is refused, never read as true."""
    value = (body if where is None else where).get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false (a JSON boolean), got {value!r:.40}.", name)
    return bool(value)


def _image_bytes(url: Any, where: str, policy: ImagePolicy) -> bytes:
    """The encoded bytes an image part names (base64 decoded, or read, or downloaded within bounds)."""
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}: 'image_url.url' must be a non-empty string (a data:image/...;base64 URL).",
                          "messages")
    if url.startswith("data:"):
        return base64_image_bytes(url, where)
    if url.startswith(REMOTE_PREFIXES):
        if not policy.allow_remote:
            raise bad_request(f"{where}: remote image URLs are refused by this server; send the image as a data "
                              "URL (data:image/png;base64,...), or start the server with --allow-remote-images.",
                              "messages", "remote_image_refused")
        return read_image_source(url, timeout=policy.remote_timeout, max_bytes=policy.max_remote_bytes)[0]
    if url.startswith("file://") and policy.allow_local:  # the same byte bound as a download
        return read_image_source(url, max_bytes=policy.max_remote_bytes)[0]
    raise bad_request(f"{where}: image URL {url[:40]!r}... is not a data URL; send data:image/png;base64,... (file:// "
                      "paths need --allow-local-images).", "messages", "invalid_image_url")


def invalid_image(where: str, err: ImageLoadError) -> APIError:
    message = str(err) if str(err).startswith(where) else f"{where}: {err}"
    return bad_request(message, "messages", "invalid_image")


def _check_image_count(urls: list, policy: ImagePolicy) -> None:
    if policy.max_images is not None and len(urls) > policy.max_images:
        raise bad_request(f"The request holds {len(urls)} images; this server takes at most {policy.max_images} per "
                          "request (--max-images-per-request).", "messages", "too_many_images")


def _encoded_images(urls: list[tuple[str, Any]], policy: ImagePolicy) -> list[EncodedImage]:
    """Each image's bytes and size, from its header: each image's pixels and their sum are refused over the policy's
    bounds before any image is decoded."""
    encoded, total = [], 0
    for where, url in urls:
        try:
            data = _image_bytes(url, where, policy)
            size = image_size(data, where, policy.max_pixels)
        except ImageLoadError as err:
            raise invalid_image(where, err) from err
        total += size[0] * size[1]
        if policy.max_total_pixels is not None and total > policy.max_total_pixels:
            raise bad_request(f"The request's images have over {policy.max_total_pixels:,} pixels together (width x "
                              f"height, summed up to {where}: {total:,}), over this server's limit per request "
                              "(--max-request-pixels); send fewer or smaller images.", "messages", "images_too_large")
        encoded.append(EncodedImage(where, data, size))
    return encoded


def _decoded(image: EncodedImage) -> Image.Image:
    try:
        return decode_image_bytes(image.data, image.where)
    except ImageLoadError as err:
        raise invalid_image(image.where, err) from err


def _items(content: Any, where: str) -> list[dict]:
    """A message's content as ``{"type": "text"|"image", "value": ...}`` items; an image's value is ``(where, url)``
    (nothing read yet)."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise bad_request(f"{where}.content must be a string or a non-empty list of parts.", "messages")
    items = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if IMAGE_PLACEHOLDER in part["text"]:
                raise bad_request(f"{where}.content: the text holds {IMAGE_PLACEHOLDER!r}, which this server keeps "
                                  "for where an image goes; send images as image_url parts and remove "
                                  f"{IMAGE_PLACEHOLDER!r} from the text.", "messages", "reserved_text")
            items.append({"type": "text", "value": part["text"]})
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            items.append({"type": "image", "value": (f"{where}.content[{j}]", url)})
        else:
            raise bad_request(f"{where}.content[{j}]: parts must be {{'type': 'text', 'text': ...}} or "
                              f"{{'type': 'image_url', 'image_url': {{'url': ...}}}}, got {part!r:.80}.", "messages")
    return items


def _turns(messages: Any) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    """The (role, text) turns and the images' (where, url) in order."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of {'role', 'content'} objects.", "messages")
    system, chat = [], []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in SYSTEM_ROLES:
            items = _items(message.get("content"), f"messages[{i}]")
            if any(item["type"] != "text" for item in items):
                raise bad_request(f"messages[{i}]: a {role} message holds text only.", "messages")
            system.append("".join(item["value"] for item in items))
        elif role in ("user", "assistant"):
            chat.append({"role": role, "content": _items(message.get("content"), f"messages[{i}]")})
        else:
            raise bad_request(f"messages[{i}].role must be system, developer, user or assistant, got {role!r:.40}.",
                              "messages")
    try:
        turns, images = MungVLM.messages_to_turns(chat)
    except ValueError as err:
        raise bad_request(f"messages (system messages left out): {err}", "messages") from err
    if system:
        turns[0] = (turns[0][0], "\n".join(system) + "\n\n" + turns[0][1])
    return turns, images


def read_chat_request(body: Any, policy: ImagePolicy, max_new_tokens_limit: int) -> ParsedRequest:
    """Check a chat-completions body and turn it into a job whose images are named and counted, not yet read; every
    problem is a 400 ``APIError`` naming the field."""
    from .session import ChatJob

    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        raise bad_request("'model' is required (a string; see GET /v1/models).", "model")
    _refuse_unsupported(body)
    noise_mode = body.get("noise_mode")
    if noise_mode is not None and noise_mode not in NOISE_MODES:
        raise bad_request(f"'noise_mode' must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r:.40}.",
                          "noise_mode")
    seed = _number(body, "seed", -(2**63), 2**63 - 1, integer=True)
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise bad_request("'stream_options' must be an object.", "stream_options")
    stream, include_usage = _flag(body, "stream"), _flag(body, "include_usage", stream_options)
    settings = _settings(body, max_new_tokens_limit)
    turns, urls = _turns(body.get("messages"))
    _check_image_count(urls, policy)
    job = ChatJob(turns=turns, images=[], settings=settings, noise_mode=noise_mode,
                  seed=None if seed is None else int(seed) % 2**32, stop=_stop_strings(body),
                  budget_name=f"'{budget_field(body)}'")
    return ParsedRequest(job=job, stream=stream, include_usage=include_usage, image_urls=urls,
                         budget_field=budget_field(body))


def parse_chat_request(body: Any, policy: ImagePolicy, max_new_tokens_limit: int) -> ParsedRequest:
    """``read_chat_request`` with the images read and decoded."""
    parsed = read_chat_request(body, policy, max_new_tokens_limit)
    parsed.read_images(policy)
    parsed.decode_images()
    return parsed


# ------------------------------------------------------------------------------------------------ writing
def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def usage_body(reply: ChatReply) -> dict:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def completion_body(request_id: str, created: int, model: str, reply: ChatReply) -> dict:
    return {
        "id": request_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": usage_body(reply), "system_fingerprint": None, "noise_mode": reply.noise_mode,
    }


def chunk_body(request_id: str, created: int, model: str, delta: dict, finish_reason: Optional[str] = None) -> dict:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk_body(request_id: str, created: int, model: str, reply: ChatReply) -> dict:
    return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage_body(reply), "noise_mode": reply.noise_mode}


def models_body(model: str, created: int) -> dict:
    return {"object": "list", "data": [model_body(model, created)]}


def model_body(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "mung"}


def now() -> int:
    return int(time.time())
