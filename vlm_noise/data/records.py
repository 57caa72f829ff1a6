"""Conversation records (LLaVA / Qwen training JSON) as chat messages and images.

A record is ``{"image": path | [paths] (optional), "conversations": [{"from": "human"|"gpt"|"system", "value"}]}``,
or a converted MMPR item ``{"image", "question", "answer"}`` (one human turn and its answer, as the Qwen recipe's
data); each ``<image>`` in a human turn stands for the next image. A record with images and no ``<image>`` gets them in
front of its first human turn, one per line (as LLaVA's data code does); text-only records have no ``image``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from mung.bad_samples import BadSampleCause, BadSampleError
from mung.images import ImageLoadError, load_image

from ..prompting import IMAGE_PLACEHOLDER, ROLES, messages_of


@dataclass
class ConversationSample:
    """One record ready for the processor: its chat messages, its images and its name for error messages."""

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    name: str = "a sample"


def _turns(record: dict, name: str) -> list[tuple[str, str]]:
    if "conversations" not in record and "question" in record and "answer" in record:
        if not isinstance(record["question"], str) or not isinstance(record["answer"], (str, int, float)):
            raise BadSampleError(f"{name}: 'question' must be text and 'answer' text or a number.")
        return [("human", record["question"]), ("gpt", str(record["answer"]))]
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise BadSampleError(f"{name}: 'conversations' must be a non-empty list of {{from, value}} turns.")
    turns = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ROLES:
            raise BadSampleError(f"{name}, conversations[{index}]: expected {{'from': one of {sorted(ROLES)}, "
                                 "'value': text}.")
        turns.append((turn["from"], turn["value"]))
    if not any(ROLES[role] == "assistant" for role, _ in turns):
        raise BadSampleError(f"{name}: no assistant ('gpt') turn to learn from.")
    return turns


def _image_paths(record: dict, name: str) -> list[str]:
    image = record.get("image")
    paths = [] if image is None else [image] if isinstance(image, str) else image
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadSampleError(f"{name}: 'image' must be a path or a list of paths.")
    return paths


def read_sample(record: dict, image_folder: str, name: str = "a sample") -> ConversationSample:
    """The messages and images of ``record`` (images relative to ``image_folder``); a ``BadSampleError`` naming the
    sample and the field otherwise."""
    turns, paths = _turns(record, name), _image_paths(record, name)
    placed = sum(text.count(IMAGE_PLACEHOLDER) for role, text in turns if ROLES[role] == "user")
    if paths and placed == 0:
        first = next(i for i, (role, _) in enumerate(turns) if ROLES[role] == "user")
        turns[first] = (turns[first][0], (IMAGE_PLACEHOLDER + "\n") * len(paths) + turns[first][1])
        placed = len(paths)
    if placed != len(paths):
        raise BadSampleError(f"{name}: {placed} {IMAGE_PLACEHOLDER} placeholder(s) in the human turns for "
                             f"{len(paths)} image(s); give one image per placeholder.")
    images = []
    for path in paths:
        try:
            images.append(load_image(path, folder=image_folder, allow_remote=False))
        except ImageLoadError as err:
            raise BadSampleError(f"{name}: {err}", BadSampleCause.UNREADABLE_IMAGE) from err
    return ConversationSample(messages=messages_of(turns, name), images=images, name=name)
