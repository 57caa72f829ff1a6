"""Question families: question texts, answers read off a scene, and scenes built for a family.

Every family is built so that the tiny models can learn it in a comparison's budget (builder version 3; with
version 2's multi-shape scenes count, yes/no and position stayed exactly at chance for every method):

- colour, shape and yes/no are asked about one large shape (position jittered); a yes/no question names that
  shape's kind and either its colour or another one, so it asks "is the colour this word?";
- count shows 1-4 small shapes, all of the kind asked about, each in its own quadrant (count the occupied
  quadrants);
- position shows one medium shape, clearly in the left or the right half.

Binding a colour to one of several small shapes is not learnable at this size (DESIGN.md section 6).

Every answer is computed from the scene (``ask_*``), never assumed from how the scene was built, and a question
is only asked when it is unambiguous (e.g. the colour of "the circle" only when there is exactly one circle).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable, Optional

from .scenes import Scene, Spec, place
from .vocabulary import (
    COLOURS,
    COUNT_WORDS,
    FAMILY_ANSWERS,
    MULTI_IMAGE_FAMILY,
    ORDINALS,
    SHAPES,
    SHORT_ANSWER,
    TEXT_FAMILY,
    plural,
    with_article,
)


@dataclass(frozen=True)
class QA:
    family: str
    question: str
    answer: str
    rejected: str = ""  # a wrong answer of the same family (MMPR's "rejected")

    @property
    def prompt(self) -> str:
        """The question as the model sees it, with LLaVA-1.5's short-answer instruction."""
        return f"{self.question}\n{SHORT_ANSWER}"


# Question texts, shared by the data files and the tokenizer corpus.
COLOUR_QUESTION = "What color is the shape?"
SHAPE_QUESTION = "What shape is shown?"


def count_question(shape: str) -> str:
    return f"How many {plural(shape)} are there?"


def yesno_question(colour: str, shape: str) -> str:
    return f"Is there {with_article(f'{colour} {shape}')}?"


def position_question(shape: str) -> str:
    return f"Is the {shape} on the left or the right?"


def text_question(category: str, first: str, second: str) -> str:
    return f"Which word names {with_article(category)}: {first} or {second}?"


def multi_image_question(subject: str) -> str:
    return f"Which image shows {with_article(subject)}, the first or the second?"


# Asking about a scene: None when the question would be ambiguous.
def ask_colour(scene: Scene) -> Optional[QA]:
    if len(scene.shapes) != 1:
        return None
    return QA("colour", COLOUR_QUESTION, scene.shapes[0].colour)


def ask_shape(scene: Scene) -> Optional[QA]:
    if len(scene.shapes) != 1:
        return None
    return QA("shape", SHAPE_QUESTION, scene.shapes[0].shape)


def ask_count(scene: Scene, shape: str) -> Optional[QA]:
    n = scene.count(shape=shape)
    if not 1 <= n <= len(COUNT_WORDS):
        return None
    return QA("count", count_question(shape), COUNT_WORDS[n - 1])


def ask_yesno(scene: Scene, colour: str, shape: str) -> Optional[QA]:
    answer = "yes" if scene.count(shape=shape, colour=colour) else "no"
    return QA("yesno", yesno_question(colour, shape), answer)


def ask_position(scene: Scene, shape: str) -> Optional[QA]:
    matches = [s for s in scene.shapes if s.shape == shape]
    if len(matches) != 1 or matches[0].side is None:
        return None
    return QA("position", position_question(shape), matches[0].side)


def all_questions(scene: Scene) -> list[QA]:
    """Every unambiguous single-image question about the scene, in a fixed order."""
    asked = [ask_colour(scene), ask_shape(scene)]
    asked += [ask_count(scene, s) for s in SHAPES]
    asked += [ask_yesno(scene, c, s) for c in COLOURS for s in SHAPES]
    asked += [ask_position(scene, s) for s in SHAPES]
    return [qa for qa in asked if qa is not None]


def with_rejected(qa: QA, rng: random.Random) -> QA:
    """Adds a wrong answer drawn from the family's other candidates."""
    wrong = [a for a in _candidates(qa.family) if a != qa.answer]
    return replace(qa, rejected=rng.choice(wrong))


def _candidates(family: str) -> tuple[str, ...]:
    if family == MULTI_IMAGE_FAMILY:
        return ORDINALS
    return FAMILY_ANSWERS[family]


# Building a scene for a family, balanced over its answers.
def make_scene(family: str, background: str, rng: random.Random) -> tuple[Scene, QA]:
    try:
        builder = _BUILDERS[family]
    except KeyError:
        raise ValueError(f"unknown question family {family!r}; choose one of {sorted(_BUILDERS)}") from None
    specs, ask = builder(rng)
    scene = place(specs, background, rng)
    qa = ask(scene)
    if qa is None:  # a builder bug, not bad luck: each builder makes its question unambiguous
        raise AssertionError(f"scene built for {family!r} does not support its question: {scene}")
    return scene, with_rejected(qa, rng)


Builder = Callable[[random.Random], tuple[list[Spec], Callable[[Scene], Optional[QA]]]]


def _build_colour(rng: random.Random):
    return [Spec(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), big=True)], ask_colour


def _build_shape(rng: random.Random):
    return [Spec(rng.choice(SHAPES), rng.choice(tuple(COLOURS)), big=True)], ask_shape


def _build_count(rng: random.Random):
    shape, n = rng.choice(SHAPES), rng.randint(1, len(COUNT_WORDS))
    quadrants = rng.sample(range(4), n)
    specs = [Spec(shape, rng.choice(tuple(COLOURS)), quadrant=q) for q in quadrants]
    return specs, lambda scene: ask_count(scene, shape)


def _build_yesno(rng: random.Random):
    shape, colour = rng.choice(SHAPES), rng.choice(tuple(COLOURS))
    asked = colour if rng.random() < 0.5 else rng.choice([c for c in COLOURS if c != colour])
    return [Spec(shape, colour, big=True)], lambda scene: ask_yesno(scene, asked, shape)


def _build_position(rng: random.Random):
    shape, colour, side = rng.choice(SHAPES), rng.choice(tuple(COLOURS)), rng.choice(("left", "right"))
    return [Spec(shape, colour, side, medium=True)], lambda scene: ask_position(scene, shape)


_BUILDERS: dict[str, Builder] = {
    "colour": _build_colour,
    "shape": _build_shape,
    "count": _build_count,
    "yesno": _build_yesno,
    "position": _build_position,
}


# Questions without an image, and about two images.
def make_text_only(rng: random.Random) -> QA:
    """'Which word names a color: red or circle?' -> 'red' (and the same for shapes)."""
    colour, shape = rng.choice(tuple(COLOURS)), rng.choice(SHAPES)
    category, right, wrong = ("color", colour, shape) if rng.random() < 0.5 else ("shape", shape, colour)
    first, second = (right, wrong) if rng.random() < 0.5 else (wrong, right)
    return QA(TEXT_FAMILY, text_question(category, first, second), right, rejected=wrong)


def make_multi_image(first: Scene, second: Scene, rng: random.Random) -> Optional[QA]:
    """A question that exactly one of the two scenes answers; None if the pair has no such property."""
    subjects = []
    for shape in SHAPES:
        subjects.append((shape, first.count(shape=shape) > 0, second.count(shape=shape) > 0))
    for colour in COLOURS:
        subjects.append((f"{colour} object", first.count(colour=colour) > 0, second.count(colour=colour) > 0))
    distinctive = [(subject, in_first) for subject, in_first, in_second in subjects if in_first != in_second]
    if not distinctive:
        return None
    subject, in_first = rng.choice(distinctive)
    answer, wrong = ORDINALS if in_first else ORDINALS[::-1]
    return QA(MULTI_IMAGE_FAMILY, multi_image_question(subject), answer, rejected=wrong)
