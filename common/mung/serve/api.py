"""An OpenAI-compatible API for any MuNG checkpoint (``python -m mung.serve.api``; also ``llava_noise.serve.api`` and
``qwen_noise.serve.api``).

    python -m mung.serve.api --model-path <ckpt> [--model-base <base>] [--port 8000] [--api-key KEY]

``GET /v1/models``, ``POST /v1/chat/completions`` (OpenAI's request and response shapes, ``stream: true`` as
server-sent events, images as data URLs, MuNG's extra ``noise_mode`` field; see ``openai_schema``) and
``GET /health``. One model answers one request at a time; up to ``--queue-size`` more wait, and beyond that a
request is answered 429 at once. With ``--api-key`` every request must carry ``Authorization: Bearer KEY``
(401 otherwise). Every error is JSON in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

A request's cost is bounded before each expensive step: its body by ``--max-request-bytes`` while it arrives; its
text by what the context can hold, before tokenising; its images by ``--max-images-per-request``,
``--max-image-pixels`` and ``--max-request-pixels`` from their headers; then a place in the line is taken (429 when
none is free) before any image is decoded. A request whose client went away is dropped, queued or running.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import socket
from typing import TYPE_CHECKING, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..commands import run_command
from ..context import PromptTooLong, max_prompt_chars
from ..help_text import description
from .openai_schema import (
    APIError,
    ImagePolicy,
    ParsedRequest,
    chunk_body,
    completion_body,
    completion_id,
    model_body,
    models_body,
    now,
    read_chat_request,
    usage_chunk_body,
)
from .options import add_server_args, bind_port, check_server_args, is_loopback, worker_from_args
from .request_body import ClientGone, load_json, read_bounded

if TYPE_CHECKING:  # the model code (torch) loads after the flags are read: --help imports none of it
    from .session import ModelWorker, Place

logger = logging.getLogger(__name__)
STREAM_END = object()
DROPPED = "A client went away before its reply was complete; its request was dropped."


def error_response(error: APIError, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class ChatService:
    """What the routes do, over one ``ModelWorker``. ``max_prompt_chars``: more characters of text than this cannot
    fit the context (``mung.context.max_prompt_chars``); ``context_len``: the model's context in tokens."""

    def __init__(self, worker: ModelWorker, model_id: str, policy: ImagePolicy, max_new_tokens_limit: int,
                 max_request_bytes: int, max_prompt_chars: Optional[int] = None, context_len: Optional[int] = None):
        self.worker, self.model_id, self.policy = worker, model_id, policy
        self.max_new_tokens_limit, self.max_request_bytes = max_new_tokens_limit, max_request_bytes
        self.max_prompt_chars, self.context_len = max_prompt_chars, context_len
        self.created = now()

    async def read_request(self, request: Request) -> tuple[ParsedRequest, Place]:
        """The checked request, its images decoded, and the place in the line it holds (the caller releases it
        unless the job is queued)."""
        try:
            raw = await read_bounded(request.stream(), request.headers.get("content-length"), self.max_request_bytes)
        except ClientDisconnect:
            raise ClientGone("the client closed the connection while sending its request") from None
        parsed = read_chat_request(load_json(raw), self.policy, self.max_new_tokens_limit)
        self._check_fits(parsed)
        try:
            parsed.job.noise_mode = self.worker.resolve_noise_mode(parsed.job.noise_mode)
        except ValueError as err:
            raise APIError(400, str(err), param="noise_mode", code="no_noise_generator") from err
        # Reading base64 or downloading images is blocking work: off the event loop. Nothing is decoded yet.
        await run_in_threadpool(parsed.read_images, self.policy)
        place = self._reserve()  # before decoding: a busy server pays nothing for a refused request
        try:
            await run_in_threadpool(parsed.decode_images)
        except BaseException:
            place.release()
            raise
        return parsed, place

    def _check_fits(self, parsed: ParsedRequest) -> None:
        """What cannot fit the context, refused before it is tokenised: a reply budget of the whole context or more,
        and more text than the context can hold."""
        settings, field = parsed.job.settings, parsed.budget_field
        if self.context_len is not None and not settings.fit_reply and settings.max_new_tokens >= self.context_len:
            raise APIError(400, f"'{field}' is {settings.max_new_tokens}, but this model's context is "
                                f"{self.context_len} tokens for the prompt and the reply together; ask for fewer.",
                           param=field, code="context_length_exceeded")
        chars = parsed.text_chars()
        if self.max_prompt_chars is not None and chars > self.max_prompt_chars:
            raise APIError(400, f"The messages hold {chars:,} characters of text; this model's context of "
                                f"{self.context_len:,} tokens cannot hold more than {self.max_prompt_chars:,}. Shorten "
                                "them.", param="messages", code="context_length_exceeded")

    def _reserve(self) -> Place:
        from .session import ServerBusy

        try:
            return self.worker.reserve()
        except ServerBusy as err:
            raise APIError(429, str(err), type="server_busy", code="queue_full") from err

    def submit(self, parsed: ParsedRequest, place: Place):
        """Queue the job in its place (released if the job is refused before it is queued)."""
        try:
            return self.worker.chat(parsed.job, place)
        except ValueError as err:
            place.release()
            raise APIError(400, str(err), param="messages") from err
        except BaseException:
            place.release()
            raise

    async def complete(self, request: Request, parsed: ParsedRequest, place: Place) -> Response:
        """The reply as one JSON body; a client that goes away while its request waits or runs is dropped: its job is
        cancelled (unrun if it still waits, stopped at the next token if it runs)."""
        job_future = self.submit(parsed, place)
        reply_future = asyncio.wrap_future(job_future)
        reply_future.add_done_callback(lambda done: done.cancelled() or done.exception())  # never "unretrieved"
        watcher = drop_when_gone(request, parsed, job_future)
        try:
            done, _ = await asyncio.wait({reply_future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if reply_future not in done or reply_future.cancelled():
            return Response(status_code=499)  # nobody reads it
        try:
            reply = reply_future.result()
        except PromptTooLong as err:
            raise too_long(err) from err
        return JSONResponse(completion_body(completion_id(), now(), self.model_id, reply))

    def stream(self, request: Request, parsed: ParsedRequest, place: Place) -> StreamingResponse:
        """The reply as server-sent events; a client that goes away drops its job (even one whose stream never
        started: the watcher does not depend on the stream)."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        parsed.job.on_text = lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
        job_future = self.submit(parsed, place)
        reply_future = asyncio.wrap_future(job_future)
        reply_future.add_done_callback(lambda _: pieces.put_nowait(STREAM_END))
        watcher = drop_when_gone(request, parsed, job_future)
        return StreamingResponse(self._events(parsed, pieces, reply_future, watcher), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(self, parsed: ParsedRequest, pieces: asyncio.Queue, reply_future, watcher
                      ) -> AsyncIterator[str]:
        request_id, created = completion_id(), now()
        try:
            yield _sse(chunk_body(request_id, created, self.model_id, {"role": "assistant", "content": ""}))
            while (piece := await pieces.get()) is not STREAM_END:
                yield _sse(chunk_body(request_id, created, self.model_id, {"content": piece}))
            try:
                reply = reply_future.result()
            except PromptTooLong as err:
                yield _sse(too_long(err).body())
                yield "data: [DONE]\n\n"
                return
            except Exception as err:  # reported in the stream, OpenAI's way; the server keeps serving
                logger.exception("generation failed")
                yield _sse(APIError(500, f"Generation failed: {err}", type="server_error").body())
                yield "data: [DONE]\n\n"
                return
            yield _sse(chunk_body(request_id, created, self.model_id, {}, reply.finish_reason))
            if parsed.include_usage:
                yield _sse(usage_chunk_body(request_id, created, self.model_id, reply))
            yield "data: [DONE]\n\n"
        finally:
            # A client that went away: a job still waiting is dropped unrun, a running one stops at the next token.
            watcher.cancel()
            parsed.job.cancelled.set()
            if reply_future.cancel():  # still waiting or running: the client is gone
                logger.info(DROPPED)

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_id, "backbone": self.worker.loaded.backbone.name,
                "running": self.worker.running, "waiting": self.worker.waiting,
                "queue_size": self.worker.max_waiting, "answered": self.worker.answered, "failed": self.worker.failed,
                "dropped": self.worker.dropped}


async def client_gone(request: Request) -> None:
    """Returns once the client has closed the connection (its body already read: the next message is the end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def drop_when_gone(request: Request, parsed: ParsedRequest, job_future) -> asyncio.Task:
    """A task that, once the client has gone, drops its job: unrun if it still waits (its future cancelled), stopped
    at the next token if it runs. The response ending counts as gone too, when the job is already done."""

    async def watch() -> None:
        await client_gone(request)
        if not job_future.done():
            parsed.job.cancelled.set()
            job_future.cancel()
            logger.info(DROPPED)

    return asyncio.ensure_future(watch())


def too_long(err: PromptTooLong) -> APIError:
    return APIError(400, str(err), param="messages", code="context_length_exceeded")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError):
        return error_response(err, {"Retry-After": "1"} if err.status == 429 else None)

    @app.exception_handler(ClientGone)
    async def client_gone_error(request: Request, err: ClientGone):
        logger.warning("%s %s: %s; nothing was answered.", request.method, request.url.path, err)
        return Response(status_code=499)  # nobody reads it

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code)
        return error_response(APIError(err.status_code, f"{request.method} {request.url.path}: {err.detail}",
                                       code=code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError):
        return error_response(APIError(400, f"Invalid request: {err.errors()[:3]}"))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception):
        logger.exception("request failed")
        return error_response(APIError(500, f"Internal error: {type(err).__name__}: {err}", type="server_error"))


def _install_key_check(app: FastAPI, api_key: Optional[str]) -> None:
    if not api_key:
        return

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        sent = request.headers.get("authorization", "")
        token = sent[7:].strip() if sent[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            what = "No API key was sent" if not sent else "The API key is not valid"
            return error_response(APIError(401, f"{what}: send 'Authorization: Bearer <key>' with the server's "
                                                 "--api-key.", code="invalid_api_key"))
        return await call_next(request)


def create_app(service: ChatService, api_key: Optional[str] = None) -> FastAPI:
    """The FastAPI application over ``service``."""
    app = FastAPI(title="MuNG OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)
    _install_key_check(app, api_key)

    @app.get("/v1/models")
    async def list_models():
        return models_body(service.model_id, service.created)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        if model_id != service.model_id:
            raise APIError(404, f"The model {model_id!r} does not exist; this server serves {service.model_id!r}.",
                           param="model", code="model_not_found")
        return model_body(service.model_id, service.created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        parsed, place = await service.read_request(request)
        if parsed.stream:
            return service.stream(request, parsed, place)
        return await service.complete(request, parsed, place)

    @app.get("/health")
    async def health():
        return service.health()

    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_server_args(parser, default_port=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every request")
    parser.add_argument("--served-model-name", default=None, help="the model id clients see (default: folder name)")
    parser.add_argument("--allow-remote-images", action="store_true",
                        help="let requests name http(s) image URLs, which the server then downloads")
    parser.add_argument("--allow-local-images", action="store_true",
                        help="let requests name file:// images on the server's disk (VLMEvalKit --local-media)")
    parser.add_argument("--max-request-bytes", type=int, default=64 * 1024 * 1024,
                        help="largest request body, counted as it arrives (default 64 MiB)")
    parser.add_argument("--max-images-per-request", type=int, default=16,
                        help="most images one request may hold (default 16)")
    parser.add_argument("--max-request-pixels", type=int, default=2 * 4096 * 4096,
                        help="most pixels (width x height) of all of one request's images together, read from their "
                             "headers before any is decoded (default 33,554,432: two 4096x4096 images)")
    parser.add_argument("--max-remote-image-bytes", type=int, default=32 * 1024 * 1024,
                        help="with --allow-remote-images: largest download, stopped once passed; with "
                        "--allow-local-images: largest file:// image read (default 32 MiB)")
    parser.add_argument("--remote-image-timeout", type=float, default=10.0,
                        help="with --allow-remote-images: seconds one download may take in all (default 10)")
    return parser.parse_args(argv)


def check_api_args(args: argparse.Namespace) -> None:
    check_server_args(args)
    for flag in ("max_request_bytes", "max_images_per_request", "max_request_pixels", "max_remote_image_bytes",
                 "remote_image_timeout"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be above 0, got {getattr(args, flag)}.")


def image_policy(args: argparse.Namespace) -> ImagePolicy:
    return ImagePolicy(allow_remote=args.allow_remote_images, allow_local=args.allow_local_images,
                       max_pixels=args.max_image_pixels, max_images=args.max_images_per_request,
                       max_total_pixels=args.max_request_pixels, max_remote_bytes=args.max_remote_image_bytes,
                       remote_timeout=args.remote_image_timeout)


def main(argv=None) -> None:
    import uvicorn

    args = parse_args(argv)
    check_api_args(args)
    if not is_loopback(args.host) and not args.api_key:
        logger.warning("Listening on %s without --api-key: anyone who can reach this address can use the model.",
                       args.host)
    listener = bind_port(args.host, args.port)  # before loading: a busy port fails at once, in one line
    worker = worker_from_args(args)
    loaded = worker.loaded
    service = ChatService(worker, args.served_model_name or loaded.model_name, image_policy(args),
                          args.max_new_tokens_limit, args.max_request_bytes, max_prompt_chars(loaded),
                          loaded.context_len)
    config = uvicorn.Config(create_app(service, args.api_key), log_level="warning")
    listener.listen(socket.SOMAXCONN)
    print(f"Serving {service.model_id} ({loaded.backbone.name}, noise {loaded.noise_label}) on "
          f"http://{args.host}:{listener.getsockname()[1]}/v1", flush=True)
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    run_command(main)
