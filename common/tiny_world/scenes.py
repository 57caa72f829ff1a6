"""Scene descriptions (what is drawn where) and random non-overlapping placement."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from .presets import IMAGE_SIZE

BACKGROUNDS = ("white", "dark")
# Half side of a shape's bounding box, in pixels: small shapes share a scene (count questions), a medium one sits
# alone in one half of the image (position questions: a small one covers too few patches of the tiny towers' 4 x 4
# grid for its side to be learnt in a comparison's budget).
MIN_HALF, MAX_HALF = 10, 15
MEDIUM_MIN_HALF, MEDIUM_MAX_HALF = 18, 24
# A shape kept inside a quadrant (count questions) has one size, so the drawn area grows with the count.
QUADRANT_HALF = 13
# A single-shape scene's one large shape: its side is 50-70% of the image side.
BIG_MIN_HALF, BIG_MAX_HALF = round(0.25 * IMAGE_SIZE), round(0.35 * IMAGE_SIZE)
# ... and its centre is jittered by at most this many pixels around the image centre. A linear probe on the tiny
# CLIP's frozen patch features tells the three shapes apart at 100% held-out with this jitter, but only ~72% when
# the shape may sit anywhere (it then straddles the 4 x 4 patch grid in too many ways for a quick training).
BIG_JITTER = 6
EDGE_MARGIN = 3
GAP = 4  # minimum free pixels between two bounding boxes
# A shape counts as "on the left/right" only if its centre is clearly off the middle.
LEFT_MAX_X = IMAGE_SIZE // 2 - 12
RIGHT_MIN_X = IMAGE_SIZE // 2 + 12


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    x: int  # centre column
    y: int  # centre row
    half: int  # half side of the bounding box

    @property
    def side(self) -> Optional[str]:
        if self.x <= LEFT_MAX_X:
            return "left"
        if self.x >= RIGHT_MIN_X:
            return "right"
        return None

    def overlaps(self, other: "Shape") -> bool:
        reach = self.half + other.half + GAP
        return abs(self.x - other.x) < reach and abs(self.y - other.y) < reach


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]
    noise_seed: int = 0  # drives the dark background's noise, so rendering is a pure function of the scene

    def count(self, shape: Optional[str] = None, colour: Optional[str] = None) -> int:
        return sum(
            (shape is None or s.shape == shape) and (colour is None or s.colour == colour) for s in self.shapes
        )

    def appearance(self) -> tuple:
        """What determines the rendered pixels: equal appearances give identical images (a white background
        ignores the noise seed)."""
        return self.background, self.shapes, self.noise_seed if self.background != "white" else 0

    def layout(self) -> tuple:
        """What is drawn, whatever the background noise: equal layouts show the same shapes in the same places."""
        return self.background, self.shapes

    def to_dict(self) -> dict:
        shapes = [{"shape": s.shape, "colour": s.colour, "x": s.x, "y": s.y, "half": s.half} for s in self.shapes]
        return {"background": self.background, "noise_seed": self.noise_seed, "shapes": shapes}

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        return cls(data["background"], tuple(Shape(**s) for s in data["shapes"]), data.get("noise_seed", 0))


@dataclass(frozen=True)
class Spec:
    """What to place: a shape kind, a colour and optionally the half or the quadrant of the image it must sit in."""

    shape: str
    colour: str
    side: Optional[str] = None
    big: bool = False  # one large shape (single-shape scenes) instead of a small one
    medium: bool = False  # a medium shape instead of a small one
    quadrant: Optional[int] = None  # 0-3, row by row from the top left: a shape of QUADRANT_HALF kept inside it


def place(specs: list[Spec], background: str, rng: random.Random) -> Scene:
    """Places every spec at a random spot so that no two bounding boxes touch; the order of shapes is shuffled."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    # Restart from scratch on a dead end; four small shapes on 112 px almost always fit on the first try.
    for _ in range(100):
        placed: list[Shape] = []
        for spec in specs:
            shape = _try_place(spec, placed, rng)
            if shape is None:
                break
            placed.append(shape)
        else:
            rng.shuffle(placed)
            return Scene(background, tuple(placed), noise_seed=rng.getrandbits(32))
    raise RuntimeError(f"could not place {len(specs)} shapes without overlap on a {IMAGE_SIZE} px image")


def _try_place(spec: Spec, placed: list[Shape], rng: random.Random) -> Optional[Shape]:
    if spec.big:
        if placed or spec.side is not None:
            raise ValueError("a big shape fills the image: it must be the only shape and have no side")
        half = rng.randint(BIG_MIN_HALF, BIG_MAX_HALF)
        centre = IMAGE_SIZE // 2
        x, y = (centre + rng.randint(-BIG_JITTER, BIG_JITTER) for _ in range(2))
        return Shape(spec.shape, spec.colour, x, y, half)
    low, high = (MEDIUM_MIN_HALF, MEDIUM_MAX_HALF) if spec.medium else (MIN_HALF, MAX_HALF)
    if spec.quadrant is not None:
        low = high = QUADRANT_HALF
    for _ in range(200):
        half = rng.randint(low, high)
        lo, hi = half + EDGE_MARGIN, IMAGE_SIZE - 1 - half - EDGE_MARGIN
        (x_lo, x_hi), (y_lo, y_hi) = (lo, hi), (lo, hi)
        if spec.side == "left":
            x_hi = LEFT_MAX_X
        elif spec.side == "right":
            x_lo = RIGHT_MIN_X
        if spec.quadrant is not None:
            (x_lo, x_hi), (y_lo, y_hi) = (_quadrant_range(half, index) for index in (spec.quadrant % 2, spec.quadrant // 2))
        candidate = Shape(spec.shape, spec.colour, rng.randint(x_lo, x_hi), rng.randint(y_lo, y_hi), half)
        if not any(candidate.overlaps(other) for other in placed):
            return candidate
    return None


def _quadrant_range(half: int, index: int) -> tuple[int, int]:
    """Centre coordinates that keep a shape inside half ``index`` (0 first, 1 second) of one axis, clear of the
    image edge and of the middle line."""
    middle = IMAGE_SIZE // 2
    start, end = (0, middle) if index == 0 else (middle, IMAGE_SIZE)
    return start + half + EDGE_MARGIN, end - 1 - half - EDGE_MARGIN
