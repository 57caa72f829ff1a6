"""An OpenAI-compatible API for any MuNG checkpoint (``python -m mung.serve.api``; also ``llava_noise.serve.api`` and
``qwen_noise.serve.api``).

    python -m mung.serve.api --model-path <ckpt> [--model-base <base>] [--port 8000] [--api-key KEY]

``GET /v1/models``, ``POST /v1/chat/completions`` (OpenAI's request and response shapes, ``stream: true`` as
server-sent events, images as data URLs, MuNG's extra ``noise_mode`` field; see ``openai_schema``) and
``GET /health``. One model answers one request at a time; up to ``--queue-size`` more wait, and beyond that a
request is answered 429 at once. With ``--api-key`` every request must carry ``Authorization: Bearer KEY``
(401 otherwise). Every error is JSON in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
from typing import AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..commands import run_command
from ..context import PromptTooLong
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
    parse_chat_request,
    usage_chunk_body,
)
from .options import add_server_args, check_server_args, is_loopback, worker_from_args
from .session import ModelWorker, ServerBusy

logger = logging.getLogger(__name__)
STREAM_END = object()


def error_response(error: APIError, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class ChatService:
    """What the routes do, over one ``ModelWorker``."""

    def __init__(self, worker: ModelWorker, model_id: str, policy: ImagePolicy, max_new_tokens_limit: int,
                 max_request_bytes: int):
        self.worker, self.model_id, self.policy = worker, model_id, policy
        self.max_new_tokens_limit, self.max_request_bytes = max_new_tokens_limit, max_request_bytes
        self.created = now()

    async def read_request(self, request: Request) -> ParsedRequest:
        self._check_size(int(request.headers.get("content-length") or 0))
        raw = await request.body()
        self._check_size(len(raw))  # a body sent without a length
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise APIError(400, f"The request body is not valid JSON ({err}).") from err
        # Decoding images is CPU work: off the event loop.
        parsed = await run_in_threadpool(parse_chat_request, body, self.policy, self.max_new_tokens_limit)
        try:
            parsed.job.noise_mode = self.worker.resolve_noise_mode(parsed.job.noise_mode)
        except ValueError as err:
            raise APIError(400, str(err), param="noise_mode", code="no_noise_generator") from err
        return parsed

    def _check_size(self, size: int) -> None:
        if size > self.max_request_bytes:
            raise APIError(413, f"The request body is {size:,} bytes, over this server's limit of "
                                f"{self.max_request_bytes:,} (--max-request-bytes); send smaller images.",
                           code="request_too_large")

    def submit(self, parsed: ParsedRequest):
        try:
            return self.worker.chat(parsed.job)
        except ServerBusy as err:
            raise APIError(429, str(err), type="server_busy", code="queue_full") from err
        except ValueError as err:
            raise APIError(400, str(err), param="messages") from err

    async def complete(self, parsed: ParsedRequest) -> JSONResponse:
        try:
            reply = await asyncio.wrap_future(self.submit(parsed))
        except PromptTooLong as err:
            raise too_long(err) from err
        return JSONResponse(completion_body(completion_id(), now(), self.model_id, reply))

    def stream(self, parsed: ParsedRequest) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        parsed.job.on_text = lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
        reply_future = asyncio.wrap_future(self.submit(parsed))  # busy: refused before any byte is sent
        reply_future.add_done_callback(lambda _: pieces.put_nowait(STREAM_END))
        return StreamingResponse(self._events(parsed, pieces, reply_future), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(self, parsed: ParsedRequest, pieces: asyncio.Queue, reply_future) -> AsyncIterator[str]:
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
            parsed.job.cancelled.set()  # a client that went away stops the generation at the next token

    def health(self) -> dict:
        return {"status": "ok", "model": self.model_id, "backbone": self.worker.loaded.backbone.name,
                "running": self.worker.running, "waiting": self.worker.waiting,
                "queue_size": self.worker.max_waiting, "answered": self.worker.answered, "failed": self.worker.failed}


def too_long(err: PromptTooLong) -> APIError:
    return APIError(400, str(err), param="messages", code="context_length_exceeded")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError):
        return error_response(err, {"Retry-After": "1"} if err.status == 429 else None)

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
        parsed = await service.read_request(request)
        return service.stream(parsed) if parsed.stream else await service.complete(parsed)

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
                        help="largest request body accepted (default 64 MiB); larger ones get 413")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    import uvicorn

    args = parse_args(argv)
    check_server_args(args)
    if not is_loopback(args.host) and not args.api_key:
        logger.warning("Listening on %s without --api-key: anyone who can reach this address can use the model.",
                       args.host)
    worker = worker_from_args(args)
    policy = ImagePolicy(allow_remote=args.allow_remote_images, allow_local=args.allow_local_images,
                         max_pixels=args.max_image_pixels)
    service = ChatService(worker, args.served_model_name or worker.loaded.model_name, policy,
                          args.max_new_tokens_limit, args.max_request_bytes)
    print(f"Serving {service.model_id} ({worker.loaded.backbone.name}, noise {worker.loaded.noise_label}) on "
          f"http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(service, args.api_key), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    run_command(main)
