"""The terminal chat loop shared by every backbone: multi-turn history, the session's images in the first turn,
replies streamed token by token and cut at the backbone's stop strings; an empty line or end of input ends it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

from PIL import Image

from .answering import answer_prompt
from .backbones import IMAGE_PLACEHOLDER, Prompt
from .generation import GenerationSettings, StopStringStreamer
from .loading import LoadedModel


@dataclass
class ChatSession:
    """What was said: (role, text) turns, and the rendered prompt of the last reply."""

    turns: list[tuple[str, str]] = field(default_factory=list)
    last_prompt: str = ""


def read_line(prompt: str) -> Optional[str]:
    """The next user message, or None at end of input."""
    try:
        return input(prompt)
    except EOFError:
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
        line = read(f"{user}: ")
        if line is None or not line.strip():
            print("exit...", file=out, flush=True)
            return session
        text = line.strip()
        if images and not session.turns:
            text = (IMAGE_PLACEHOLDER + "\n") * len(images) + text
        session.turns.append(("user", text))
        print(f"{assistant}: ", end="", flush=True, file=out)
        streamer = StopStringStreamer(loaded.tokenizer, stops, out=out, skip_special_tokens=True)
        reply, encoded = answer_prompt(loaded, Prompt(list(session.turns), list(images)), settings, streamer)
        session.turns.append(("assistant", reply))
        session.last_prompt = encoded.text
        if debug:
            print("\n", {"prompt": encoded.text, "outputs": reply}, "\n", sep="", file=out, flush=True)
