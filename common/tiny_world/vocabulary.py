"""The words of the tiny world: colours, shapes, answer words, question families and prompt texts."""

from __future__ import annotations

# Fill colours. Saturated and far apart so that a frozen random vision tower still separates them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 50, 180),
    "orange": (250, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
YES_NO: tuple[str, ...] = ("yes", "no")
SIDES: tuple[str, ...] = ("left", "right")
ORDINALS: tuple[str, ...] = ("first", "second")  # answers of the multi-image questions

# Families asked about a single image; evaluation splits hold exactly these.
FAMILIES: tuple[str, ...] = ("colour", "shape", "count", "yesno", "position")
# Families that only appear in training files.
TEXT_FAMILY = "text"
MULTI_IMAGE_FAMILY = "multi_image"
MULTI_TURN_FAMILY = "multi_turn"

# The candidate answers of each family; chance level is 1 / len(candidates).
FAMILY_ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": COUNT_WORDS,
    "yesno": YES_NO,
    "position": SIDES,
}
CHANCE: dict[str, float] = {family: 1.0 / len(answers) for family, answers in FAMILY_ANSWERS.items()}

ANSWER_WORDS: tuple[str, ...] = tuple(COLOURS) + SHAPES + COUNT_WORDS + YES_NO + SIDES + ORDINALS

# LLaVA-1.5's short-answer instruction and its vicuna_v1 system prompt (tokenizer corpus only).
SHORT_ANSWER = "Answer the question using a single word or phrase."
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
IMAGE_PLACEHOLDER = "<image>"


def with_article(phrase: str) -> str:
    """'red circle' -> 'a red circle', 'orange object' -> 'an orange object'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plural(shape: str) -> str:
    """'circle' -> 'circles' (every shape name takes a plain -s)."""
    return shape + "s"
