"""Labels on the assistant turns only, for any chat template.

1. ``assistant_spans``: render the whole chat once; each assistant message's text is found in it after the prompt
   that precedes it (the chat up to that message, rendered with the generation prompt), so a template may add or
   trim whatever it likes around the content.
2. ``labels_for_tokens``: the fast tokenizer's offset mapping turns those character spans into tokens; a token that
   overlaps a span is supervised, and so is the first token after it (the template's end of turn, e.g.
   ``<|im_end|>`` or ``</s>``).
3. ``align_labels``: the processor expands each image marker into the image's placeholder tokens; the labels of the
   rendered text are carried over to the expanded ids by matching the two token sequences (expansions are
   insertions; every supervised token must find its place, else the sample is refused).
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from mung.bad_samples import BadSampleError
from noise_generator import IGNORE_INDEX

from ..prompting import render


def assistant_spans(processor, messages: list[dict[str, Any]], name: str = "a sample") -> tuple[str, list[tuple[int, int]]]:
    """(the rendered chat, the character span of each assistant message's text in it)."""
    full = render(processor, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(processor, messages[:index], add_generation_prompt=True) if index else ""
        start = max(cursor, len(prompt) if full.startswith(prompt) else cursor)
        text = "".join(item.get("text", "") for item in message["content"]).strip()
        found = full.find(text, start)
        if found < 0:
            raise BadSampleError(f"{name}: the chat template does not render assistant turn {len(spans) + 1} "
                                 "verbatim, so its tokens cannot be found for the labels.")
        spans.append((found, found + len(text)))
        cursor = found + len(text)
    return full, spans


def labels_for_tokens(offsets: Sequence[tuple[int, int]], ids: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Labels of tokens with character ``offsets``: the id where a token overlaps a span or is the first token
    after one (the end of turn), ``IGNORE_INDEX`` elsewhere."""
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        for position, (token_start, token_end) in enumerate(offsets):
            if token_start < end and token_end > start:
                labels[position] = ids[position]
        following = (p for p, (token_start, token_end) in enumerate(offsets)
                     if token_start >= end and token_end > token_start)  # the next non-empty token
        after = next(following, None)
        if after is not None:
            labels[after] = ids[after]
    return labels


def align_labels(text_ids: Sequence[int], text_labels: Sequence[int], model_ids: Sequence[int], name: str) -> list[int]:
    """``text_labels`` (of the rendered text's tokens) carried over to ``model_ids`` (the processor's, with every
    image expanded into its placeholder tokens)."""
    labels = [IGNORE_INDEX] * len(model_ids)
    matcher = difflib.SequenceMatcher(None, list(text_ids), list(model_ids), autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            labels[block.b + offset] = text_labels[block.a + offset]
    wanted = sum(label != IGNORE_INDEX for label in text_labels)
    if sum(label != IGNORE_INDEX for label in labels) != wanted:
        raise BadSampleError(f"{name}: the processor's tokens do not contain the assistant tokens of the rendered "
                             "chat unchanged; the labels cannot be placed.")
    return labels
