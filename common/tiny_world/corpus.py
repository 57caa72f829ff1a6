"""The text both tokenizers are trained on: every question and answer the data can contain, the prompt
templates' words, and short scene captions for a little more ordinary English.

The corpus does not depend on the build seed, so every world of a preset shares its tokenizers.
"""

from __future__ import annotations

import itertools

from .questions import (
    COLOUR_QUESTION,
    SHAPE_QUESTION,
    count_question,
    multi_image_question,
    position_question,
    text_question,
    yesno_question,
)
from .vocabulary import (
    ANSWER_WORDS,
    COLOURS,
    COUNT_WORDS,
    LLAVA_SYSTEM,
    SHAPES,
    SHORT_ANSWER,
    SIDES,
    plural,
    with_article,
)

QWEN_SYSTEM = "You are a helpful assistant."
# Repeats of each "question -> answer" line: BPE merges follow frequency, and every answer word must end up as
# a single token (checked after training).
ANSWER_REPEATS = 8


def corpus_lines() -> list[str]:
    questions = _questions()
    lines = [LLAVA_SYSTEM, QWEN_SYSTEM, SHORT_ANSWER, "system", "user", "assistant", "USER:", "ASSISTANT:"]
    for question, answers in questions:
        for answer in answers:
            llava_turn = f"USER: <image>\n{question}\n{SHORT_ANSWER} ASSISTANT: {answer}"
            lines += [llava_turn, f"{question}\n{answer}"] * ANSWER_REPEATS
    lines += [" ".join(ANSWER_WORDS), "\n".join(ANSWER_WORDS)] * ANSWER_REPEATS
    lines += _captions()
    lines.append("0 1 2 3 4 5 6 7 8 9 . , ; : ! ? ' \" ( ) [ ] { } < > / - _ + = * & % $ # @")
    return lines


def _questions() -> list[tuple[str, tuple[str, ...]]]:
    colours = tuple(COLOURS)
    asked = [(COLOUR_QUESTION, colours), (SHAPE_QUESTION, SHAPES)]
    asked += [(count_question(s), COUNT_WORDS) for s in SHAPES]
    asked += [(yesno_question(c, s), ("yes", "no")) for c in colours for s in SHAPES]
    asked += [(position_question(s), SIDES) for s in SHAPES]
    for c, s in itertools.product(colours, SHAPES):
        asked += [(text_question("color", c, s), (c,)), (text_question("color", s, c), (c,))]
        asked += [(text_question("shape", c, s), (s,)), (text_question("shape", s, c), (s,))]
    subjects = list(SHAPES) + [f"{c} object" for c in colours]
    asked += [(multi_image_question(subject), ("first", "second")) for subject in subjects]
    return asked


def _captions() -> list[str]:
    lines = []
    for c, s, side in itertools.product(COLOURS, SHAPES, SIDES):
        lines.append(f"There is {with_article(f'{c} {s}')} on the {side} of the picture.")
        lines.append(f"The {s} in this image is {c}, and it is on the {side} side.")
    for n, s in zip(COUNT_WORDS[1:], itertools.cycle(SHAPES)):
        lines.append(f"I can see {n} {plural(s)} on a white background.")
        lines.append(f"The photo has {n} {plural(s)} on a dark, noisy background.")
    return lines
