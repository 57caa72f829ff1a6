"""What the web demo's buttons do: read an upload, answer (streamed), answer twice side by side (noise off and
MuNG), draw the noise maps. Every failure a person can cause, or the server can meet, becomes a one-line message
in the page's status line; nothing here lets an exception (and its stack trace) reach the page."""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterator, Optional

import gradio as gr
from PIL import Image

from ..backbones import IMAGE_PLACEHOLDER
from ..generation import GenerationSettings
from ..images import ImageLoadError, load_image
from ..visualize import noise_figure
from .session import ChatJob, ChatReply, ModelWorker, ServerBusy

logger = logging.getLogger(__name__)
EMPTY_MESSAGE = "Type a question first."


def warning(text: str) -> str:
    return f"⚠️ {text}"


def failure_message(err: Exception) -> str:
    """What the status line says about ``err``: the message of an expected error, a short line for others."""
    if isinstance(err, (ImageLoadError, ServerBusy, ValueError)):
        return warning(str(err))
    logger.exception("the demo met an unexpected error")
    return warning(f"Something went wrong on the server ({type(err).__name__}: {err}). It is still running; try again.")


def chat_messages(turns: list[list[str]]) -> list[dict]:
    """The chat as the Chatbot shows it."""
    return [{"role": role, "content": text} for role, text in turns]


def current_question(message: Optional[str], turns: list) -> str:
    """The question in the box, else the last one asked in the chat ("" when there is none)."""
    return (message or "").strip() or next((text for role, text in reversed(turns) if role == "user"), "")


class DemoHandlers:
    """The demo's callbacks over one ``ModelWorker``; ``max_pixels`` bounds uploads. ``is_upload(path)`` says whether
    a path is a file a visitor uploaded (``build_demo`` sets it: Gradio's record of uploads), which is deleted once
    read, so uploads do not pile up in the temporary folder; example files are never uploads."""

    def __init__(self, worker: ModelWorker, max_pixels: int):
        self.worker = worker
        self.max_pixels = max_pixels
        self.is_upload: Callable[[str], bool] = lambda path: False

    def discard_upload(self, path: str) -> None:
        """Delete an uploaded file (and the one-file folder Gradio put it in) once it has been read."""
        if not self.is_upload(path):
            return
        try:
            os.remove(path)
            os.rmdir(os.path.dirname(path))  # only when empty: Gradio gives each upload a folder of its own
        except OSError:
            pass  # gone already, or the folder holds another file

    # --- the image ---------------------------------------------------------------------------------------------
    def load_upload(self, path: Optional[str]) -> tuple:
        """(file box, image, preview, chat state, chat view, status) for a newly chosen file; a new image starts a new
        chat. A file that is not a usable image is named in the status and cleared from the file box (so another can
        be dropped); clearing the box leaves the status as it is."""
        if not path:
            return gr.skip(), None, None, [], [], gr.skip()  # gr.skip(): leave that output as it is
        name = os.path.basename(path)
        try:
            image = load_image(path, max_pixels=self.max_pixels)
        except ImageLoadError as err:
            return None, None, None, [], [], warning(f"{name}: {str(err).replace(str(path), 'the file')}")
        except Exception as err:  # noqa: BLE001 - shown in the page, the server keeps serving
            return None, None, None, [], [], failure_message(err)
        finally:
            self.discard_upload(path)  # read into memory (or refused): the file is no longer needed
        return gr.skip(), image, image, [], [], f"Image loaded ({image.width}x{image.height}). Ask a question about it."

    # --- answering -----------------------------------------------------------------------------------------------
    def _job(self, turns: list[list[str]], image: Optional[Image.Image], settings: tuple, mode: Optional[str]
             ) -> ChatJob:
        temperature, top_p, max_new_tokens, seed = settings
        chat = [(role, text) for role, text in turns]
        images = [image] if image is not None else []
        if images:  # the image goes in front of the first question, as the backbones were trained
            chat[0] = (chat[0][0], IMAGE_PLACEHOLDER + "\n" + chat[0][1])
        generation = GenerationSettings(temperature=float(temperature), top_p=float(top_p),
                                        max_new_tokens=int(max_new_tokens))
        return ChatJob(turns=chat, images=images, settings=generation, noise_mode=mode,
                       seed=None if seed is None else int(seed))

    def _stream(self, job: ChatJob) -> Iterator[tuple[str, Optional[ChatReply]]]:
        """(text so far, None) while streaming, then (final text, reply)."""
        text = ""
        for piece in self.worker.stream(job):
            if isinstance(piece, ChatReply):
                yield piece.text, piece
            else:
                text += piece
                yield text, None

    def ask(self, message: str, turns: list, image: Optional[Image.Image], temperature: float, top_p: float,
            max_new_tokens: int, seed: Optional[float], noise_mode: str):
        """Stream the reply to ``message`` after the chat so far; yields (chat view, chat state, question, status)."""
        if not (message or "").strip():
            yield chat_messages(turns), turns, message, warning(EMPTY_MESSAGE)
            return
        asked = list(turns) + [["user", message.strip()]]
        shown = asked + [["assistant", ""]]
        try:
            job = self._job(asked, image, (temperature, top_p, max_new_tokens, seed), noise_mode)
            for text, reply in self._stream(job):
                shown[-1][1] = text
                status = "Answering ..." if reply is None else self._done(reply)
                yield chat_messages(shown), turns if reply is None else shown, "" if reply else message, status
        except Exception as err:  # noqa: BLE001 - shown in the page, the server keeps serving
            yield chat_messages(turns), turns, message, failure_message(err)

    @staticmethod
    def _done(reply: ChatReply) -> str:
        cut = " (cut at the max new tokens)" if reply.finish_reason == "length" else ""
        return (f"Answered with noise {reply.noise_mode}: {reply.completion_tokens} new tokens for a "
                f"{reply.prompt_tokens}-token prompt{cut}.")

    def mung_mode(self, noise_mode: str) -> str:
        """The MuNG side's mode: the chosen one, else the checkpoint's, else ``mean``."""
        if noise_mode != "off":
            return noise_mode
        return self.worker.default_noise_mode if self.worker.default_noise_mode != "off" else "mean"

    def side_by_side(self, message: str, turns: list, image: Optional[Image.Image], temperature: float,
                     top_p: float, max_new_tokens: int, seed: Optional[float], noise_mode: str):
        """The question (the box's, else the last asked) alone, answered with noise off and with MuNG (same seed and
        settings); yields (base answer, MuNG answer, status)."""
        message = current_question(message, turns)
        if not message:
            yield "", "", warning(EMPTY_MESSAGE)
            return
        if not self.worker.has_generator():
            yield "", "", warning("This checkpoint has no noise generator, so MuNG and the base model are the same "
                                  "model here. Load a MuNG checkpoint to compare.")
            return
        settings = (temperature, top_p, max_new_tokens, seed)
        mode = self.mung_mode(noise_mode)
        base = ""
        try:
            for base, _ in self._stream(self._job([["user", message]], image, settings, "off")):
                yield base, "", "Answering with noise off ..."
            for mung, reply in self._stream(self._job([["user", message]], image, settings, mode)):
                yield base, gr.Textbox(value=mung, label=f"MuNG (noise {mode})"), (
                    f"Answering with noise {mode} ..." if reply is None
                    else f"Same question, same seed: left with noise off, right with noise {mode}.")
        except Exception as err:  # noqa: BLE001 - shown in the page, the server keeps serving
            yield base, "", failure_message(err)

    # --- the noise map ---------------------------------------------------------------------------------------------
    def noise_map(self, message: str, turns: list, image: Optional[Image.Image]):
        """(‖μ‖ figure, σ figure, status) for the current image and question (the box's, else the last asked)."""
        question = current_question(message, turns)
        if image is None:
            return None, None, warning("Upload an image first: the noise map is drawn over it.")
        if not question:
            return None, None, warning(EMPTY_MESSAGE + " The noise depends on the question.")
        try:
            maps, box = self.worker.noise_maps(image, question).result()
        except Exception as err:  # noqa: BLE001 - shown in the page, the server keeps serving
            return None, None, failure_message(err)
        return (noise_figure(image, maps["mu_norm"], "mu_norm", box),
                noise_figure(image, maps["sigma_mean"], "sigma_mean", box),
                f"Noise map for \"{question.splitlines()[0][:80]}\": colours span each map's own low..high (numbers "
                "under the bars).")

    @staticmethod
    def clear() -> tuple[list, list, str, str]:
        return [], [], "", "Chat cleared."

