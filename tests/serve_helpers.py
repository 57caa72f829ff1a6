"""Shared pieces of the serving tests: images as data URLs, and the answers the served model must give, computed in
this process through the shared answering path (an independent reference for what a server sends back)."""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Optional

from PIL import Image

from mung.answering import answer_prompt
from mung.backbones import Prompt
from mung.generation import GenerationSettings, StopStringStreamer
from mung.images import load_image
from mung.loading import LoadedModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_KEY = "sk-mung-test"


def first_eval_image(tiny_world: dict) -> str:
    with open(tiny_world["eval_questions"]) as handle:
        return os.path.join(tiny_world["image_folder"], json.loads(handle.readline())["image"])


def data_url(path: str, fmt: str = "PNG") -> str:
    """The image at ``path`` as a data URL in ``fmt`` (JPEG as VLMEvalKit sends, PNG as lmms-eval does)."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def reference_answer(loaded: LoadedModel, turns: list[tuple[str, str]], images: list, max_new_tokens: int,
                     noise_mode: str, pieces: Optional[list] = None) -> str:
    """The greedy answer of ``loaded`` in ``noise_mode``; ``images`` are paths or data URLs. With ``pieces``, the
    shared streamer's pieces of the answer are appended to it as they come."""
    before = loaded.noise_mode
    loaded.noise_mode = noise_mode
    streamer = None
    if pieces is not None:
        streamer = StopStringStreamer(loaded.tokenizer, loaded.backbone.stop_strings(loaded), on_text=pieces.append,
                                      skip_special_tokens=True)
    try:
        prompt = Prompt(list(turns), [load_image(image) for image in images])
        settings = GenerationSettings(temperature=0, max_new_tokens=max_new_tokens)
        return answer_prompt(loaded, prompt, settings, streamer)[0]
    finally:
        loaded.noise_mode = before
