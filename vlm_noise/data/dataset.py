"""The training set of the generic backbone: conversation records (a JSON list or JSON lines) checked one by one
when used, with the bad-sample policy of ``mung.bad_samples``.

A sample is bad when its record is malformed, an image is missing or unreadable, it is longer than
``max_length`` tokens with its images, or its labels cannot be placed; ``on_bad_sample="raise"`` stops with a message
naming it, ``skip`` uses the next good sample, counts and logs it, and stops once more than ``max_bad_sample_share``
of the samples were bad. Checking a sample runs the family's processor on it alone (its token count and labels
depend on the processor's image expansion), so every sample is processed twice: once here, once in its batch.

A family whose processor takes no prompt without an image (PaliGemma) cannot learn from text-only records at all:
they are left out up front, with one warning saying how many (not bad samples: the data is fine for other families).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from torch.utils.data import Dataset

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, BadSampleCause, BadSampleError, BadSamplePolicy
from mung.files import read_records
from noise_generator import IGNORE_INDEX

from ..prompting import accepts_text_only
from .collator import ConversationCollator
from .records import ConversationSample, read_sample

logger = logging.getLogger(__name__)


class ConversationDataset(Dataset):
    """``data_path``'s records as ``ConversationSample``s (see the module docstring); batch them with
    ``ConversationCollator``."""

    def __init__(self, data_path: str | os.PathLike, processor, image_folder: Optional[str | os.PathLike] = None,
                 max_length: Optional[int] = None, on_bad_sample: str = "skip",
                 max_bad_sample_share: float = DEFAULT_MAX_BAD_SAMPLE_SHARE):
        self.data_path = str(data_path)
        self.records, self.lines = read_records(data_path, with_lines=True,
                                                expected="the training JSON/JSONL file as --data_path")
        if not self.records:
            raise ValueError(f"{data_path} holds no records; pass the training JSON/JSONL file as --data_path.")
        self.image_folder = None if image_folder is None else str(image_folder)
        self.check = ConversationCollator(processor, max_length)
        self.kept = self._usable(processor)  # record indices, in file order
        self.bad_samples = BadSamplePolicy(len(self.kept), on_bad_sample, max_bad_sample_share,
                                           image_folder=image_folder, source=self.data_path)

    def _usable(self, processor) -> list[int]:
        everything = list(range(len(self.records)))
        if accepts_text_only(processor):
            return everything
        kept = [i for i in everything if self.records[i].get("image")]
        if len(kept) < len(everything):
            logger.warning("%s: %d of %d records have no image and are left out: %s takes no prompt without an "
                           "image.", self.data_path, len(everything) - len(kept), len(everything),
                           type(processor).__name__)
        if not kept:
            raise ValueError(f"{self.data_path} holds no record with an image, and {type(processor).__name__} takes "
                             "no prompt without one.")
        return kept

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def skipped(self) -> int:
        """Distinct bad samples met so far (this process and its data-loader workers)."""
        return self.bad_samples.skipped

    def name(self, index: int) -> str:
        """How messages name sample ``index``: the file, its index, its line (JSON lines) and its id."""
        name = f"{self.data_path} sample {index}"
        if self.lines[index] is not None:
            name += f" (line {self.lines[index]})"
        if self.records[index].get("id") is not None:
            name += f" id {self.records[index]['id']}"
        return name

    def _check_images_exist(self, record: dict, name: str) -> None:
        image = record.get("image")
        for path in [image] if isinstance(image, str) else image if isinstance(image, list) else []:
            if not isinstance(path, str) or "://" in path or path.startswith("data:"):
                continue  # read_sample names a wrong type and refuses URLs itself
            full = Path(self.image_folder, path) if self.image_folder and not os.path.isabs(path) else Path(path)
            if not full.is_file():
                raise BadSampleError(f"{name}: image {full} does not exist.", BadSampleCause.MISSING_IMAGE)

    def load(self, position: int) -> ConversationSample:
        """The sample at ``position``, checked through the processor; a ``BadSampleError`` when it cannot be used."""
        index = self.kept[position]
        name = self.name(index)
        self._check_images_exist(self.records[index], name)
        sample = read_sample(self.records[index], self.image_folder, name)
        try:
            labels = self.check([sample])["labels"]
        except BadSampleError:
            raise
        except ValueError as err:  # the family's processor refuses it (e.g. PaliGemma: no prompt without an image)
            raise BadSampleError(f"{name}: {err}") from err
        if not bool((labels != IGNORE_INDEX).any()):
            raise BadSampleError(f"{name}: no answer token to learn from (the assistant turns are empty).")
        return sample

    def __getitem__(self, position: int) -> ConversationSample:
        """The sample at ``position``, or (``on_bad_sample="skip"``) the next good one after it."""
        return self.bad_samples.first_good(position, self.load)
