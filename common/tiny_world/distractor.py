"""The distractor split (builder version 4): several shapes per image, a question about one of them.

Each scene shows 2 or 3 medium shapes of different kinds and colours. The question names its target by colour
("the red shape"), by kind ("the circle") or by side ("the shape on the left", only when the target is the only
shape on that side) and asks about that shape only, so the other shapes are irrelevant content the model must
ignore. Families: colour, shape, yes/no ("is the circle red?" - for half of the "no" answers the colour named is
another shape's, so only the binding of colour to the named shape answers it) and position. Count is not asked:
a question that names one shape has nothing to count.

Like ``questions``, every answer is read off the scene (``ask``), and a question whose target the scene does not
single out is never asked.
"""

from __future__ import annotations

import random
from typing import Optional

from .questions import QA, position_question, with_rejected
from .scenes import Scene, Shape, Spec, place
from .vocabulary import COLOURS, SHAPES, SIDES

DISTRACTOR_FAMILIES: tuple[str, ...] = ("colour", "shape", "yesno", "position")
NAMED_BY = ("colour", "shape", "side")
MIN_SHAPES, MAX_SHAPES = 2, 3


def describe(named_by: str, target: Shape) -> str:
    """How a question names its target: 'the red shape', 'the circle', 'the shape on the left'."""
    if named_by == "colour":
        return f"the {target.colour} shape"
    if named_by == "shape":
        return f"the {target.shape}"
    return f"the shape on the {target.side}"


def find_target(scene: Scene, named_by: str, value: str) -> Optional[Shape]:
    """The one shape of the scene with that colour / kind / side; None when no shape or several match."""
    matches = [s for s in scene.shapes if getattr(s, "colour" if named_by == "colour" else named_by) == value]
    return matches[0] if len(matches) == 1 else None


def ask(scene: Scene, family: str, named_by: str, value: str, asked_colour: str = "") -> Optional[QA]:
    """The question of ``family`` about the shape named by ``named_by`` = ``value``; None when ambiguous (no
    single target, a position question about a shape in the middle, or naming the target by what is asked)."""
    target = find_target(scene, named_by, value)
    if target is None or named_by == _ASKS[family]:
        return None
    subject = describe(named_by, target)
    if family == "colour":
        return QA("colour", f"What color is {subject}?", target.colour)
    if family == "shape":  # "what shape is the red one?", not "... the red shape?"
        subject = f"the {target.colour} one" if named_by == "colour" else subject
        return QA("shape", f"What shape is {subject}?", target.shape)
    if family == "yesno":
        return QA("yesno", f"Is {subject} {asked_colour}?", "yes" if target.colour == asked_colour else "no")
    if target.side is None:
        return None
    text = position_question(target.shape) if named_by == "shape" else f"Is {subject} on the left or the right?"
    return QA("position", text, target.side)


# What each family asks about, so a question never names its target by its own answer ("what colour is the red
# shape?"); yes/no asks about the colour too.
_ASKS = {"colour": "colour", "shape": "shape", "yesno": "colour", "position": "side"}


def make_distractor_scene(family: str, background: str, rng: random.Random) -> tuple[Scene, QA]:
    """A scene of 2-3 shapes and an unambiguous ``family`` question about one of them (drawn again until the
    random layout singles the target out)."""
    if family not in DISTRACTOR_FAMILIES:
        raise ValueError(f"the distractor split asks {DISTRACTOR_FAMILIES}, not {family!r}")
    while True:
        n = rng.randint(MIN_SHAPES, MAX_SHAPES)
        kinds, colours = rng.sample(SHAPES, n), rng.sample(tuple(COLOURS), n)
        target_side = rng.choice(SIDES)
        specs = [Spec(kinds[0], colours[0], side=target_side, medium=True)]
        specs += [Spec(k, c, medium=True) for k, c in zip(kinds[1:], colours[1:])]
        scene = place(specs, background, rng)
        target = next(s for s in scene.shapes if s.shape == kinds[0])
        named_by = rng.choice([n for n in NAMED_BY if n != _ASKS[family]])
        value = {"colour": target.colour, "shape": target.shape, "side": target.side}[named_by]
        asked = _asked_colour(scene, target, rng) if family == "yesno" else ""
        qa = ask(scene, family, named_by, value, asked)
        if qa is not None:
            return scene, with_rejected(qa, rng)


def _asked_colour(scene: Scene, target: Shape, rng: random.Random) -> str:
    """Half the time the target's colour (yes); otherwise another shape's colour in the scene (a binding test)
    or, for variety, a colour not shown at all."""
    if rng.random() < 0.5:
        return target.colour
    others = [s.colour for s in scene.shapes if s is not target]
    if rng.random() < 0.75:
        return rng.choice(others)
    return rng.choice([c for c in COLOURS if c != target.colour and c not in others])
