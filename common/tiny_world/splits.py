"""Splits as lists of samples (questions + the scenes of their images), before any file is written."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .distractor import DISTRACTOR_FAMILIES, make_distractor_scene
from .questions import QA, all_questions, make_multi_image, make_scene, make_text_only, with_rejected
from .scenes import Scene
from .vocabulary import FAMILIES, MULTI_TURN_FAMILY, TEXT_FAMILY

# Shares of a training split; evaluation splits are single-turn, single-image and balanced over FAMILIES (the same
# number of questions per family, so "overall" is the mean of the families).
TEXT_ONLY_SHARE = 0.02
MULTI_TURN_SHARE = 0.04
IMAGE_AFTER_TEXT_SHARE = 0.1  # samples whose <image> follows the question (LLaVA must handle both places)
MULTI_IMAGE_SHARE = 0.03  # extra two-image samples, Qwen/MMPR files only

# Relative weights of the single-image families in a training split: more of the families that take longest to
# learn (shape, count, position), fewer of colour, which the tiny models learn fastest (yes/no questions need it too).
FAMILY_WEIGHTS = {"colour": 2, "shape": 3, "count": 3, "yesno": 2, "position": 3}
assert tuple(FAMILY_WEIGHTS) == FAMILIES

SPLIT_BACKGROUNDS = {"train": "white", "eval": "white", "shift_train": "dark", "shift_eval": "dark",
                     # builder version 4: a validation split of the shift setting, and the distractor setting's three
                     "shift_val": "dark", "distractor_train": "white", "distractor_val": "white",
                     "distractor_eval": "white"}
DISTRACTOR_SPLITS = ("distractor_train", "distractor_val", "distractor_eval")


@dataclass(frozen=True)
class Sample:
    id: str
    family: str
    turns: tuple[QA, ...]
    images: tuple[str, ...] = ()  # relative to the image folder; empty for text-only samples
    image_first: bool = True  # whether <image> opens the first human turn


@dataclass
class Split:
    name: str
    samples: list[Sample]
    scenes: dict[str, Scene] = field(default_factory=dict)  # image path -> what it shows


def split_rng(seed: int, name: str) -> random.Random:
    # One stream per split (string seeds hash deterministically), so resizing one split leaves the others alone.
    return random.Random(f"tiny_world/{seed}/{name}")


def make_split(name: str, n: int, seed: int, training: bool, avoid: frozenset = frozenset(),
               avoid_layouts: frozenset = frozenset()) -> Split:
    """``avoid``: scene appearances (Scene.appearance) not to draw, e.g. the training images when building an
    evaluation split (one large shape on white has few enough variants that a repeat would otherwise happen).
    ``avoid_layouts``: (background, shapes) not to draw whatever the noise (the validation split: not even the
    same shapes on other noise as a training or evaluation image). Distractor splits (DISTRACTOR_SPLITS) draw
    several shapes per image and ask single-turn questions of DISTRACTOR_FAMILIES only."""
    if name not in SPLIT_BACKGROUNDS:
        raise ValueError(f"unknown split {name!r}; choose one of {sorted(SPLIT_BACKGROUNDS)}")
    rng = split_rng(seed, name)
    background = SPLIT_BACKGROUNDS[name]
    distractor = name in DISTRACTOR_SPLITS
    draw = make_distractor_scene if distractor else make_scene
    kinds = _plan(n, training and not distractor, rng, DISTRACTOR_FAMILIES if distractor else None)
    split = Split(name, [])
    for index, kind in enumerate(kinds):
        sample_id = f"{name}-{index:05d}"
        if kind == TEXT_FAMILY:
            split.samples.append(Sample(sample_id, TEXT_FAMILY, (make_text_only(rng),)))
            continue
        family = kind[1] if isinstance(kind, tuple) else kind
        scene, qa = draw(family, background, rng)
        while scene.appearance() in avoid or scene.layout() in avoid_layouts:
            scene, qa = draw(family, background, rng)
        turns = (qa, _second_turn(scene, qa, rng)) if isinstance(kind, tuple) else (qa,)
        path = f"{name}/{index:05d}.png"
        split.scenes[path] = scene
        image_first = not training or rng.random() >= IMAGE_AFTER_TEXT_SHARE
        sample_family = MULTI_TURN_FAMILY if len(turns) > 1 else family
        split.samples.append(Sample(sample_id, sample_family, turns, (path,), image_first))
    return split


def _plan(n: int, training: bool, rng: random.Random, families: tuple[str, ...] | None = None) -> list:
    """Sample kinds in random order: a family name, TEXT_FAMILY, or (MULTI_TURN_FAMILY, first family).
    ``families``: only these, weighed alike, single-turn (the distractor splits)."""
    n_text = round(n * TEXT_ONLY_SHARE) if training else 0
    n_multi = round(n * MULTI_TURN_SHARE) if training else 0
    n_single = n - n_text - n_multi
    # A weighted round-robin fixes each family's share exactly; evaluation splits weigh every family alike.
    weights = FAMILY_WEIGHTS if training else dict.fromkeys(families or FAMILIES, 1)
    cycle = [family for family, weight in weights.items() for _ in range(weight)]
    kinds: list = [cycle[i % len(cycle)] for i in range(n_single)]
    kinds += [(MULTI_TURN_FAMILY, FAMILIES[i % len(FAMILIES)]) for i in range(n_multi)]
    kinds += [TEXT_FAMILY] * n_text
    rng.shuffle(kinds)
    return kinds


def _second_turn(scene: Scene, first: QA, rng: random.Random) -> QA:
    """Another question about the same image, from another family (a family first, so the 18 possible yes/no
    questions do not crowd out the rest); yes/no questions exist for every scene, so one always exists."""
    by_family: dict[str, list[QA]] = {}
    for qa in all_questions(scene):
        if qa.family != first.family:
            by_family.setdefault(qa.family, []).append(qa)
    family = rng.choice(sorted(by_family))
    return with_rejected(rng.choice(by_family[family]), rng)


def make_multi_image_samples(split: Split, n: int, seed: int) -> list[Sample]:
    """Two-image questions over pairs of the split's own images."""
    rng = split_rng(seed, f"{split.name}/multi_image")
    paths = sorted(split.scenes)
    if len(paths) < 2:
        raise ValueError(f"split {split.name!r} has fewer than two images to pair")
    samples = []
    while len(samples) < n:
        first, second = rng.sample(paths, 2)
        qa = make_multi_image(split.scenes[first], split.scenes[second], rng)
        if qa is not None:
            sample_id = f"{split.name}-multi-{len(samples):05d}"
            samples.append(Sample(sample_id, qa.family, (qa,), (first, second)))
    return samples
