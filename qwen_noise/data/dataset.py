"""Supervised fine-tuning data for Qwen2.5-VL: records → chat-template tokens, labels and image tensors.

Accepted records (a JSON list or JSON lines):

- converted MMPR items ``{"image": str | [str], "question": str, "answer": str}`` (images go before the question);
- conversations ``{"image"?: str | [str], "conversations": [{"from": "human"|"gpt", "value": str}, ...]}`` with one
  ``<image>`` placeholder per image, in order (no placeholder: all images go to the front of the first human turn).
  Records without images are text-only samples.

Each sample is rendered with Qwen's chat template (default system prompt, ``<|im_start|>role\\n…<|im_end|>\\n``)
piece by piece, so labels are exact: assistant content and its ``<|im_end|>`` are supervised, everything else is -100.
Truncation to ``model_max_length`` never splits an image's tokens: such samples, and samples left without any
supervised token, are bad samples (``on_bad_sample``: ``raise`` names the sample, ``skip`` uses the next good one,
counts and logs it, and stops once more than ``max_bad_sample_share`` of the samples were bad; see
``mung.bad_samples``). The file is parsed up front (a syntax error names its line); samples are checked when used.
Each example carries ``sample_id`` (file, index, line of a JSONL file, record id) for error messages.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, BadSampleCause, BadSampleError, BadSamplePolicy
from mung.files import read_records
from mung.images import ImageLoadError, ImageMissing
from noise_generator import IGNORE_INDEX

from .prompting import DEFAULT_SYSTEM_PROMPT, IMAGE_PLACEHOLDER, MM_TEXT, encode_images, tokenize_conversation

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class BadSample(BadSampleError):
    """A record that cannot be turned into a training example (bad format, missing image, truncation); ``cause``
    says which, for the bad-sample counts."""


@dataclass
class Sample:
    """A record in a neutral form: image paths and (role, text) turns whose texts hold ``<image>`` placeholders."""

    images: list[str]
    turns: list[tuple[str, str]]


def load_records(
    path: str | os.PathLike, with_lines: bool = False, expected: str = "the training JSON/JSONL file as --data_path"
):
    """Read a JSON list or a JSON-lines file of records (training data, question files, MMPR annotations) with
    ``mung.files.read_records`` (errors name the file and line, a non-UTF-8 byte included); ``with_lines`` also
    returns each record's line number in a JSONL file (None for a JSON list). ``expected`` says what to pass
    instead when ``path`` is missing."""
    return read_records(path, with_lines=with_lines, expected=expected)


def to_sample(record: dict[str, Any], where: str) -> Sample:
    """Normalise one record (either format) into a ``Sample``; ``where`` names it in error messages."""
    images = record.get("image") or []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise BadSample(f"{where}: 'image' must be a path or a list of paths.")

    if "conversations" in record:
        if not isinstance(record["conversations"], list) or not record["conversations"]:
            raise BadSample(f"{where}: the conversation is empty; give it a human turn and a gpt reply.")
        turns = []
        for i, turn in enumerate(record["conversations"]):
            if not isinstance(turn, dict):
                raise BadSample(f"{where}: turn {i} is not an object {{from, value}}.")
            role = ROLES.get(turn.get("from", turn.get("role")))
            value = turn.get("value", turn.get("content"))
            if role is None or not isinstance(value, str):
                raise BadSample(f"{where}: turn {i} needs 'from' (human|gpt) and a text 'value'.")
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                raise BadSample(f"{where}: turn {i} is from '{role}', expected '{expected}' (turns alternate, human first).")
            turns.append((role, value))
        if turns[-1][0] != "assistant":
            raise BadSample(
                f"{where}: no assistant ('gpt') turn at the end, so nothing would be learned from it; add the reply "
                "or remove the sample."
            )
    elif "question" in record and "answer" in record:
        question = record["question"].replace(IMAGE_PLACEHOLDER, "").strip()
        turns = [("user", IMAGE_PLACEHOLDER * len(images) + question), ("assistant", str(record["answer"]))]
    else:
        raise BadSample(f"{where}: expected 'conversations' or 'question' + 'answer' keys, got {sorted(record)}.")

    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for _, text in turns)
    if placeholders == 0 and images:
        turns[0] = ("user", IMAGE_PLACEHOLDER * len(images) + turns[0][1])
    elif placeholders != len(images):
        raise BadSample(f"{where}: {placeholders} <image> placeholders for {len(images)} images; use one per image.")
    if any(role == "assistant" and IMAGE_PLACEHOLDER in text for role, text in turns):
        raise BadSample(f"{where}: <image> placeholders belong in human turns.")
    return Sample(images=images, turns=turns)


def check_truncation(input_ids: list[int], labels: list[int], types: list[int], max_length: int, where: str) -> int:
    """The length to keep (≤ max_length); raises BadSample if truncation splits an image or leaves no answer."""
    if len(input_ids) <= max_length:
        kept = len(input_ids)
    else:
        kept = max_length
        # An image's tokens run from <|vision_start|> to <|vision_end|>: the cut must not fall inside or before one.
        last_image = max((i for i, t in enumerate(types) if t != MM_TEXT), default=-1)
        if last_image + 1 >= kept:  # +1: the image's <|vision_end|> must stay too
            raise BadSample(
                f"{where}: {len(input_ids)} tokens exceed model_max_length={max_length} and the cut would split or drop "
                "image tokens; raise --model_max_length or lower --max_pixels.",
                BadSampleCause.TOO_LONG,
            )
    if all(label == IGNORE_INDEX for label in labels[:kept]):
        raise BadSample(
            f"{where}: no supervised (answer) token left within model_max_length={max_length} "
            f"({len(input_ids)} tokens); raise --model_max_length or shorten the prompt.",
            BadSampleCause.TOO_LONG,
        )
    return kept


class QwenSupervisedDataset(Dataset):
    """Chat-template SFT samples for Qwen2.5-VL (see the module docstring)."""

    def __init__(
        self,
        data_path: str | os.PathLike,
        processor,
        image_folder: Optional[str | os.PathLike] = None,
        model_max_length: int = 2048,
        min_pixels: Optional[int] = None,
        max_pixels: Optional[int] = None,
        on_bad_sample: str = "skip",
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_bad_sample_share: float = DEFAULT_MAX_BAD_SAMPLE_SHARE,
    ):
        self.data_path = str(data_path)
        self.records, self.lines = load_records(data_path, with_lines=True)
        if not self.records:
            raise ValueError(f"{data_path} holds no records.")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_folder = Path(image_folder) if image_folder else None
        self.model_max_length = model_max_length
        image_processor = processor.image_processor
        self.min_pixels = min_pixels if min_pixels is not None else image_processor.size["shortest_edge"]
        self.max_pixels = max_pixels if max_pixels is not None else image_processor.size["longest_edge"]
        self.merge_size = image_processor.merge_size
        self.system_prompt = system_prompt
        self.bad_samples = BadSamplePolicy(
            len(self.records), on_bad_sample, max_bad_sample_share, image_folder=image_folder, source=self.data_path
        )

    def __len__(self) -> int:
        return len(self.records)

    def has_image(self, index: int) -> bool:
        return bool(self.records[index].get("image"))

    @property
    def skipped(self) -> int:
        """Distinct bad samples met so far (this process and its data-loader workers)."""
        return self.bad_samples.skipped

    def _where(self, index: int) -> str:
        record = self.records[index]
        where = f"{self.data_path} sample {index}"
        if self.lines[index] is not None:
            where += f" (line {self.lines[index]})"
        if record.get("id") is not None:
            where += f" id {record['id']}"
        return where

    def load_images(self, paths: list[str], where: str) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Resize with qwen-vl-utils (bounded by min/max pixels) and encode; returns (pixel_values, image_grid_thw)."""
        try:
            return encode_images(self.processor, paths, self.min_pixels, self.max_pixels, self.image_folder)
        except ImageMissing as err:
            raise BadSample(f"{where}: {err}", BadSampleCause.MISSING_IMAGE) from None
        except ImageLoadError as err:
            raise BadSample(f"{where}: {err}", BadSampleCause.UNREADABLE_IMAGE) from None

    def encode(self, index: int) -> dict[str, Any]:
        """The training example of record ``index``; raises BadSample when it cannot be used."""
        where = self._where(index)
        sample = to_sample(self.records[index], where)
        pixel_values, grid = self.load_images(sample.images, where)
        counts = [] if grid is None else (grid.prod(-1) // self.merge_size**2).tolist()
        input_ids, labels, types = tokenize_conversation(sample.turns, counts, self.tokenizer, self.system_prompt)
        kept = check_truncation(input_ids, labels, types, self.model_max_length, where)
        example = {
            "sample_id": where,
            "input_ids": torch.tensor(input_ids[:kept], dtype=torch.long),
            "labels": torch.tensor(labels[:kept], dtype=torch.long),
            "mm_token_type_ids": torch.tensor(types[:kept], dtype=torch.int),
        }
        if pixel_values is not None:
            example["pixel_values"] = pixel_values
            example["image_grid_thw"] = grid
        return example

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Record ``index``'s example, or (``on_bad_sample="skip"``) the next good one after it."""
        return self.bad_samples.first_good(index, self.encode)
