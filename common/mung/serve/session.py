"""The model worker both servers share: one loaded model, one thread that runs it, and a bounded line of waiting
requests.

A model answers one request at a time (generation is not thread-safe: the noise mode and the random seed are
per-request settings of the one model), so every request becomes a job on a queue that one worker thread drains
in order. The queue is bounded: a job that finds it full is refused at once (``ServerBusy``) instead of waiting
without end, and a server turns that into "busy, retry later". A job's caller waits on a ``Future``; a streaming
caller also receives the reply's text piece by piece through ``on_text`` (called on the worker thread).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

import torch
from PIL import Image
from transformers import StoppingCriteria, set_seed

from noise_generator import find_noise_generator

from ..answering import generate_replies
from ..context import check_fits
from ..backbones import Prompt
from ..generation import GenerationSettings, StopStringStreamer
from ..loading import LoadedModel
from ..noise_modes import resolve_noise_mode
from ..visualize import noise_maps

logger = logging.getLogger(__name__)
_STREAM_END = object()


class ServerBusy(RuntimeError):
    """The waiting line is full; the request was not taken."""


class Place:
    """A place in the worker's line (running or waiting), held from before a request's images are decoded until the
    worker is done with its job, so decoding is bounded by the line's length too. ``release`` is idempotent."""

    def __init__(self, places: threading.BoundedSemaphore):
        self._places, self._held = places, True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._places.release()


@dataclass
class ChatJob:
    """One chat to answer: (role, text) turns with ``<image>`` where each image goes, the images, how to decode,
    the noise mode (None: the checkpoint's), an optional seed, extra stop strings, and a streaming callback."""

    turns: list[tuple[str, str]]
    images: list[Image.Image]
    settings: GenerationSettings
    noise_mode: Optional[str] = None
    seed: Optional[int] = None
    stop: list[str] = field(default_factory=list)
    on_text: Optional[Callable[[str], None]] = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    budget_name: str = "the max new tokens"  # how messages name the reply budget (the API: 'max_tokens')


@dataclass
class ChatReply:
    """The answer with OpenAI's usage counts (prompt tokens as the backbone encodes the prompt), why it ended
    (``stop`` or ``length``) and the noise mode it was answered with."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    noise_mode: str


class _Cancelled(StoppingCriteria):
    """Ends generation once the job's caller has gone away (a closed stream)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ModelWorker:
    """Runs every job on ``loaded`` in one thread; at most ``max_waiting`` jobs wait behind the running one."""

    def __init__(self, loaded: LoadedModel, max_waiting: int = 8):
        if max_waiting < 1:
            raise ValueError(f"--queue-size must be at least 1, got {max_waiting}.")
        self.loaded = loaded
        self.default_noise_mode = loaded.noise_mode
        self.max_waiting = max_waiting
        self._places = threading.BoundedSemaphore(max_waiting + 1)  # the running job and those waiting
        self._jobs: queue.Queue = queue.Queue()  # bounded by the places
        self._running = 0
        self.answered = 0
        self.failed = 0
        self.dropped = 0  # jobs whose caller went away before they ran
        self._thread = threading.Thread(target=self._serve, name="mung-model-worker", daemon=True)
        self._thread.start()

    # --- the line --------------------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    @property
    def running(self) -> int:
        return self._running

    def reserve(self) -> Place:
        """A place in the line, or ``ServerBusy`` at once when every place is taken."""
        if not self._places.acquire(blocking=False):
            raise ServerBusy(
                f"The server is busy: {self.max_waiting} requests are already waiting for the model (--queue-size "
                f"{self.max_waiting}). Retry in a moment."
            )
        return Place(self._places)

    def submit(self, work: Callable[[], Any], place: Optional[Place] = None) -> Future:
        """Queue ``work`` (run on the worker thread) in ``place`` (one is taken when None); its result or error arrives
        in the returned future. A future cancelled while it waits is dropped unrun."""
        future: Future = Future()
        self._jobs.put((work, future, place or self.reserve()))
        return future

    def _serve(self) -> None:
        while True:
            work, future, place = self._jobs.get()
            if work is None:
                return
            try:
                self._run(work, future)
            finally:
                place.release()

    def _run(self, work: Callable[[], Any], future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            self.dropped += 1
            return
        self._running = 1
        try:
            result = work()
        except Exception as err:  # handed to the waiting caller, which reports it; the worker keeps serving
            self._running, self.failed = 0, self.failed + 1
            future.set_exception(err)
            return
        # Counted before the caller hears back, so a client that asks right after sees its request counted.
        self._running, self.answered = 0, self.answered + 1
        future.set_result(result)

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        self._jobs.put((None, None, None))

    # --- jobs ------------------------------------------------------------------------------------------------
    def resolve_noise_mode(self, requested: Optional[str]) -> str:
        """The mode a request gets: its own (``sample``/``mean`` refused without a generator), else the checkpoint's."""
        if requested is None:
            return self.default_noise_mode
        return resolve_noise_mode(self.loaded.model, requested)[0]

    def has_generator(self) -> bool:
        return find_noise_generator(self.loaded.model) is not None

    def chat(self, job: ChatJob, place: Optional[Place] = None) -> Future:
        """Queue ``job`` (in ``place``, when one was reserved); the future's result is a ``ChatReply``. Bad settings
        fail here, before queueing."""
        mode = self.resolve_noise_mode(job.noise_mode)
        Prompt(list(job.turns), list(job.images)).check()
        return self.submit(lambda: self._answer(job, mode), place)

    def _answer(self, job: ChatJob, mode: str) -> ChatReply:
        loaded = self.loaded
        if job.seed is not None:
            set_seed(job.seed)
        prompt = Prompt(list(job.turns), list(job.images))
        encoded = loaded.backbone.encode(loaded, prompt)
        # refused with the limit, never past the context
        settings = check_fits(loaded, encoded, job.settings, budget_name=job.budget_name)
        batch = loaded.backbone.collate(loaded, [encoded])
        streamer = None
        if job.on_text is not None:
            stops = list(loaded.backbone.stop_strings(loaded)) + list(job.stop)
            streamer = StopStringStreamer(loaded.tokenizer, stops, on_text=job.on_text, skip_special_tokens=True)
        loaded.noise_mode = mode  # per request; safe because this thread is the model's only user
        try:
            reply = generate_replies(loaded, batch, settings, streamer, stop_strings=job.stop,
                                     stopping=[_Cancelled(job.cancelled)])[0]
        finally:
            loaded.noise_mode = self.default_noise_mode
        return ChatReply(text=reply.text, prompt_tokens=len(encoded.input_ids), completion_tokens=reply.new_tokens,
                         finish_reason=reply.finish_reason, noise_mode=mode)

    def stream(self, job: ChatJob) -> Iterator[Union[str, ChatReply]]:
        """Queue ``job`` and yield its reply's text piece by piece, then the ``ChatReply``; closing the iterator early
        (a caller that went away) stops the generation."""
        pieces: queue.Queue = queue.Queue()
        job.on_text = pieces.put
        future = self.chat(job)
        future.add_done_callback(lambda _: pieces.put(_STREAM_END))
        try:
            while (piece := pieces.get()) is not _STREAM_END:
                yield piece
            yield future.result()
        finally:
            job.cancelled.set()

    def noise_maps(self, image: Image.Image, question: str) -> Future:
        """Queue a noise-map job; the future's result is ``(maps, content_box)`` (see ``mung.visualize.noise_maps``)."""
        if not self.has_generator():
            raise ValueError("This checkpoint has no noise generator, so there is no noise to map.")
        return self.submit(lambda: noise_maps(self.loaded, image, question))
