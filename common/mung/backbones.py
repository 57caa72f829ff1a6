"""The backbone contract: what a backbone gives the app layer, and how the app layer finds the right one.

A backbone is its model, its data and one ``Backbone`` subclass that can

- load: build its model class from a checkpoint folder with a noise generator attached or not (``load_weights``),
  load its tokenizer/processor (``load_processor``), and finish what its model needs after the weights (``finish``);
- encode: turn a chat (``Prompt``: turns with ``<image>`` where each image goes, and the images) into model inputs
  for one sample (``encode``) and left-pad several of them into a batch (``collate``);
- generate: run ``generate`` on such a batch and return the new tokens only (``generate``), with the strings that end
  a reply (``stop_strings``);
- show the noise: say which grid of patches a sample's image tokens form (``image_grid``).

Everything else (which checkpoint kind a folder holds, LoRA and generator restores, noise modes, batching,
records, chat history, streaming, scoring, serving) is shared and never branches on a backbone's name.

Backbones are found through the ``mung.backbones`` entry-point group (``name = "package.module:Class"`` in a
project's ``pyproject.toml``) or registered at run time with ``register``; ``for_config`` picks the one that
serves a checkpoint's ``config.json`` (highest ``priority`` first, so a generic backbone can serve what the others
do not).
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from PIL import Image

if TYPE_CHECKING:  # torch in annotations only: the flags' modules import this one without loading torch
    import torch
    from noise_generator import NoiseGeneratorConfig

    from .compare.recipes import ComparisonRecipes

    from .loading import LoadedModel, LoadOptions

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
ENTRY_POINT_GROUP = "mung.backbones"


@dataclass
class Prompt:
    """A chat to answer: ``turns`` are (role, text) pairs, role ``user`` or ``assistant``, ending with a user turn;
    each ``<image>`` in a user text stands for the next image of ``images``."""

    turns: list[tuple[str, str]]
    images: list[Image.Image] = field(default_factory=list)

    @classmethod
    def question(cls, text: str, images: Optional[list[Image.Image]] = None) -> "Prompt":
        """One user turn; images without a placeholder in ``text`` go in front of it, one per line."""
        images = list(images or [])
        placed = text.count(IMAGE_PLACEHOLDER)
        if images and placed == 0:
            text = (IMAGE_PLACEHOLDER + "\n") * len(images) + text
        return cls(turns=[("user", text)], images=images)

    def check(self) -> None:
        placed = sum(text.count(IMAGE_PLACEHOLDER) for role, text in self.turns if role == "user")
        if placed != len(self.images):
            raise ValueError(
                f"The chat has {placed} {IMAGE_PLACEHOLDER} placeholder(s) for {len(self.images)} image(s); give one "
                f"image per placeholder (a literal {IMAGE_PLACEHOLDER} typed into a question counts as one)."
            )
        if not self.turns or self.turns[-1][0] != "user":
            raise ValueError("A prompt must end with a user turn.")


@dataclass
class EncodedPrompt:
    """One sample's model inputs: the prompt's token ids and the backbone's other per-sample tensors (pixels,
    grids, token types), plus the rendered prompt text."""

    input_ids: list[int]
    tensors: dict[str, torch.Tensor]
    text: str
    # The prompt's images, for backbones whose processor batches several samples itself (``collate``).
    images: list[Image.Image] = field(default_factory=list)


class Backbone(ABC):
    """One backbone's side of the contract (see the module docstring). Subclasses are stateless."""

    name: str = ""
    priority: int = 0
    # Fragments of parameter names that checkpoint files restore after ``load_weights`` (their MISSING report is
    # held back while loading): the projector of projector-only / LoRA runs, the generator.
    restorable: tuple[str, ...] = ("noise_generator.",)
    # Its recipes, flags and eval module for ``python -m mung.compare`` (``mung.compare.recipes``); None: cannot be
    # compared yet.
    comparison: Optional["ComparisonRecipes"] = None

    # --- which checkpoints --------------------------------------------------------------------------------------
    @abstractmethod
    def serves(self, config: dict) -> bool:
        """True when this backbone can load a checkpoint with this ``config.json`` (a dict)."""

    def refusal(self, config: dict) -> Optional[str]:
        """Why this backbone does not serve ``config`` when that is worth telling the user (None: nothing to say)."""
        return None

    # --- loading ------------------------------------------------------------------------------------------------
    @abstractmethod
    def load_weights(
        self, weights: str, config_source: str, generator: Optional["NoiseGeneratorConfig"], options: "LoadOptions"
    ) -> tuple[torch.nn.Module, list[str]]:
        """``from_pretrained`` of the model in ``weights`` with the config of ``config_source`` (+ ``generator``
        when given). Returns the model and the names of the weights the folder did not hold; anything unexpected
        or of the wrong shape raises."""

    def load_projector(self, model: torch.nn.Module, path: Path) -> None:
        raise ValueError(f"{path}: projector-only checkpoints are not a {self.name} format.")

    def finish(self, model: torch.nn.Module, options: "LoadOptions") -> None:
        """Work after all weights are in (e.g. loading a vision tower kept outside the checkpoint)."""

    @abstractmethod
    def load_processor(self, source: str, model: torch.nn.Module) -> tuple[Any, Any]:
        """(tokenizer, processor) from folder ``source``; the processor is whatever ``encode`` needs for images."""

    def context_length(self, model: torch.nn.Module) -> int:
        config = getattr(model, "config", None)
        text = getattr(config, "text_config", None) or config
        return int(getattr(text, "max_position_embeddings", None) or 2048)

    def add_inference_args(self, parser: Any) -> None:
        """Flags of this backbone's own for the shared inference entry points (e.g. image pixel bounds)."""

    def configure(self, loaded: "LoadedModel", args: Any) -> None:
        """Read this backbone's own flags (``add_inference_args``) into ``loaded.extra``."""

    def default_template(self, loaded: "LoadedModel") -> Optional[str]:
        """The conversation template name to use when none is asked for (None: the backbone has just one)."""
        return None

    def check_template(self, template: Optional[str]) -> None:
        """Refuse a template name this backbone does not know (called before any model loads)."""

    # --- prompting ----------------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, loaded: "LoadedModel", prompt: Prompt) -> EncodedPrompt:
        """Model inputs of one chat, ending with the assistant's generation prompt."""

    def prompt_length(self, loaded: "LoadedModel", encoded: EncodedPrompt) -> int:
        """How many positions of the context ``encoded`` takes (image tokens included), against
        ``LoadedModel.context_len``. Default: its token ids (right when each image token has an id of its own)."""
        return len(encoded.input_ids)

    @abstractmethod
    def collate(self, loaded: "LoadedModel", samples: list[EncodedPrompt]) -> dict[str, Any]:
        """A left-padded batch of ``samples`` on the model's device, with ``attention_mask``."""

    @abstractmethod
    def generate(self, loaded: "LoadedModel", batch: dict[str, Any], **kwargs: Any) -> torch.Tensor:
        """``model.generate`` on ``batch``; returns only the new tokens, ``[B, n]``."""

    def stop_strings(self, loaded: "LoadedModel") -> list[str]:
        """Text that ends a reply besides the EOS token (cut from answers, never streamed)."""
        return []

    def role_names(self, loaded: "LoadedModel") -> tuple[str, str]:
        """How the user and the assistant are labelled in a terminal chat."""
        return ("USER", "ASSISTANT")

    # --- showing the noise --------------------------------------------------------------------------------------
    @abstractmethod
    def image_grid(
        self, loaded: "LoadedModel", encoded: EncodedPrompt, image: Image.Image
    ) -> tuple[int, int, Optional[tuple[float, float, float, float]]]:
        """(rows, cols, content box) of the first image's tokens in ``encoded``: the box is where ``image`` sits in
        the grid as fractions (left, top, right, bottom), or None when it fills it."""


_registered: list[Backbone] = []


def register(backbone: Backbone) -> Backbone:
    """Make ``backbone`` known for this process (entry points cover installed backbones)."""
    if not any(type(b) is type(backbone) for b in _registered):
        _registered.append(backbone)
    return backbone


def known_backbones() -> list[Backbone]:
    """Registered and installed backbones, highest priority first. An installed backbone that cannot be imported
    is left out with a warning naming it, so one broken plugin does not stop the others from loading."""
    found = list(_registered)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = point.load()
        except (ImportError, AttributeError) as err:
            logger.warning("Backbone %r (%s) cannot be imported and is skipped: %s", point.name, point.value, err)
            continue
        if not any(type(b) is cls for b in found):
            found.append(cls())
    return sorted(found, key=lambda b: -b.priority)


def by_name(name: str) -> Backbone:
    for backbone in known_backbones():
        if backbone.name == name:
            return backbone
    names = ", ".join(sorted(b.name for b in known_backbones()))
    raise ValueError(f"No backbone named {name!r}; installed: {names}.")


def for_config(config: dict, source: str) -> Backbone:
    """The backbone that serves a checkpoint with ``config`` (read from ``source``), or a clear error."""
    for backbone in known_backbones():
        if backbone.serves(config):
            return backbone
    names = ", ".join(sorted(b.name for b in known_backbones()))
    reasons = [f" {b.name}: {reason}" for b in known_backbones() if (reason := b.refusal(config))]
    raise ValueError(
        f"{source} holds a model of type {config.get('model_type')!r}, which no installed MuNG backbone serves "
        f"({names}).{''.join(reasons)}"
    )


def read_config(folder: str | os.PathLike) -> Optional[dict]:
    """``folder/config.json`` as a dict, or None without one."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); the checkpoint is damaged.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object; the checkpoint is damaged.")
    return config
