"""Scene descriptions (what is drawn where) and random non-overlapping placement."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from .presets import IMAGE_SIZE

BACKGROUNDS = ("white", "dark")
MIN_HALF, MAX_HALF = 10, 15  # half side of a shape's bounding box in multi-shape scenes, in pixels
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

    def to_dict(self) -> dict:
        shapes = [{"shape": s.shape, "colour": s.colour, "x": s.x, "y": s.y, "half": s.half} for s in self.shapes]
        return {"background": self.background, "noise_seed": self.noise_seed, "shapes": shapes}

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        return cls(data["background"], tuple(Shape(**s) for s in data["shapes"]), data.get("noise_seed", 0))


@dataclass(frozen=True)
class Spec:
    """What to place: a shape kind, a colour and optionally the half of the image it must sit in."""

    shape: str
    colour: str
    side: Optional[str] = None
    big: bool = False  # one large shape (single-shape scenes) instead of a small one


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
    for _ in range(200):
        half = rng.randint(MIN_HALF, MAX_HALF)
        lo, hi = half + EDGE_MARGIN, IMAGE_SIZE - 1 - half - EDGE_MARGIN
        x_lo, x_hi = lo, hi
        if spec.side == "left":
            x_hi = LEFT_MAX_X
        elif spec.side == "right":
            x_lo = RIGHT_MIN_X
        candidate = Shape(spec.shape, spec.colour, rng.randint(x_lo, x_hi), rng.randint(lo, hi), half)
        if not any(candidate.overlaps(other) for other in placed):
            return candidate
    return None
