"""The terminal chat loop shared by every backbone: multi-turn history, the session's images in the first turn,
replies streamed token by token and cut at the backbone's stop strings; an empty line or end of input ends it.

A message that cannot be answered is refused with one line and the session goes on (nothing is added to the
history): ``<image>`` typed into it (the session's images have their place already), bytes that are not UTF-8, or a
prompt that would not fit the model's context with room for the reply (``context.check_fits``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

from PIL import Image

from .answering import answer_prompt
from .backbones import IMAGE_PLACEHOLDER, Prompt
from .context import PromptTooLong
from .generation import GenerationSettings, StopStringStreamer
from .loading import LoadedModel


@dataclass
class ChatSession:
    """What was said: (role, text) turns, and the rendered prompt of the last reply."""

    turns: list[tuple[str, str]] = field(default_factory=list)
    last_prompt: str = ""


class UnreadableMessage(ValueError):
    """A typed message that cannot be used; the message says why."""


def read_line(prompt: str) -> Optional[str]:
    """The next user message, or None at end of input; bytes the terminal cannot decode are an
    ``UnreadableMessage``."""
    try:
        return input(prompt)
    except EOFError:
        return None
    except UnicodeDecodeError as err:
        raise UnreadableMessage(f"byte {err.object[err.start]:#04x} of your message is not UTF-8") from None


def message_problem(text: str) -> Optional[str]:
    """Why a typed message cannot be sent (None when it can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:  # stdin decoded with surrogateescape: undecodable bytes
        return f"character {err.start + 1} of your message is not UTF-8 text (set the terminal to UTF-8 and retype it)"
    if IMAGE_PLACEHOLDER in text:
        return (f"{IMAGE_PLACEHOLDER} is where an image goes; this session's images are placed already "
                f"(--image-file), so write it another way")
    return None


def chat(
    loaded: LoadedModel,
    images: list[Image.Image],
    settings: GenerationSettings,
    read: Callable[[str], Optional[str]] = read_line,
    out: Optional[TextIO] = None,
    debug: bool = False,
) -> ChatSession:
    """Talk until an empty line or end of input; the images go in front of the first message."""
    out = out if out is not None else sys.stdout
    user, assistant = loaded.backbone.role_names(loaded)
    stops = loaded.backbone.stop_strings(loaded)
    session = ChatSession()
    while True:
        try:
            line = read(f"{user}: ")
        except UnreadableMessage as err:
            print(f"[not sent] {err}; retype it.", file=out, flush=True)
            continue
        if line is None or not line.strip():
            print("exit...", file=out, flush=True)
            return session
        text = line.strip()
        problem = message_problem(text)
        if problem:
            print(f"[not sent] {problem}.", file=out, flush=True)
            continue
        if images and not session.turns:
            text = (IMAGE_PLACEHOLDER + "\n") * len(images) + text
        streamer = StopStringStreamer(loaded.tokenizer, stops, out=out, skip_special_tokens=True)
        prompt = Prompt(session.turns + [("user", text)], list(images))
        try:
            reply, encoded = answer_prompt(loaded, prompt, settings, _Announced(streamer, f"{assistant}: ", out))
        except PromptTooLong as err:
            print(f"[not sent] {err}", file=out, flush=True)
            continue
        session.turns += [("user", text), ("assistant", reply)]
        session.last_prompt = encoded.text
        if debug:
            print("\n", {"prompt": encoded.text, "outputs": reply}, "\n", sep="", file=out, flush=True)


class _Announced:
    """A streamer that prints the assistant's label before the first piece of its reply (so a refused message
    prints no label)."""

    def __init__(self, streamer: StopStringStreamer, label: str, out: TextIO):
        self.streamer, self.label, self.out, self.started = streamer, label, out, False

    def put(self, value) -> None:
        if not self.started:
            print(self.label, end="", flush=True, file=self.out)
            self.started = True
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()
