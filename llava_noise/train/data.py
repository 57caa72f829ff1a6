"""Training data of LLaVA-1.5: conversations → (input_ids, labels), images → pixel values, batches.

One preprocessing path serves every template: the template renders the conversation and marks which characters
are assistant replies (plus the text that ends them, e.g. ``</s>``); a token is supervised when it covers such
characters. A token that straddles a reply boundary is a tokenisation mismatch: it is logged with the sample id,
counted, and the sample is left unsupervised.

Bad input: the data file is parsed up front (syntax errors name the line); samples are checked when first used
(missing/unreadable image, empty conversation, no assistant reply, ``<image>`` count, nothing left to supervise after
truncation). ``on_bad_sample="skip"`` uses the next good sample, counts and logs it, and stops once more than
``max_bad_sample_share`` of the samples were bad (``mung.bad_samples``); ``"raise"`` stops with a message naming the
file, the sample and what to do.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, BadSampleCause, BadSampleError, BadSamplePolicy
from mung.files import read_json, read_jsonl
from mung.images import ImageLoadError, ImageMissing, load_image
from mung.paths import missing_reason
from mung.training.nonfinite import SAMPLE_IDS_KEY

from ..constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from ..conversation import Conversation, SeparatorStyle, get_conv_template
from ..mm_utils import expand2square, tokenize_image_prompt

logger = logging.getLogger(__name__)

ROLE_OF = {"human": 0, "user": 0, "gpt": 1, "assistant": 1}


class SampleError(BadSampleError):
    """A training sample that cannot be used; the message names it (``cause``: why, for the bad-sample counts)."""


def normalise_image_tokens(
    conversations: list[dict],
    n_images: int,
    sample_id: Any,
    mm_use_im_start_end: bool = False,
    mmtag: bool = False,
) -> list[dict]:
    """Put the ``<image>`` tokens of each turn at the front of that turn, as LLaVA's preprocess_multimodal does.

    A turn holding ``<image>`` (any turn, any place) becomes ``<image>\\n`` + its text without them, stripped (a
    turn of ``<image>`` alone stays ``<image>``); several in one turn stay several (one per image, in order).
    ``mmtag`` wraps each as ``<Image><image></Image>``, ``mm_use_im_start_end`` as ``<im_start><image><im_end>``.
    A sample with images but no ``<image>`` token gets them in front of its first turn; a token count that
    differs from the sample's images is an error.
    """
    turns = copy.deepcopy(conversations)
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise SampleError(f"Sample {sample_id}: turn {k} has no text 'value'; give every turn {{from, value}}.")
    counts = [turn["value"].count(DEFAULT_IMAGE_TOKEN) for turn in turns]
    found = sum(counts)
    if found and found != n_images:
        raise SampleError(
            f"Sample {sample_id}: {found} <image> tokens but {n_images} image(s); use one <image> per image."
        )
    if n_images and not found and turns:
        counts[0] = n_images
    token = DEFAULT_IMAGE_TOKEN
    if mmtag:
        token = "<Image>" + token + "</Image>"
    if mm_use_im_start_end:
        token = token.replace(DEFAULT_IMAGE_TOKEN, DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN)
    for turn, count in zip(turns, counts):
        if count:
            text = turn["value"].replace(DEFAULT_IMAGE_TOKEN, "").strip()
            turn["value"] = ((token + "\n") * count + text).strip()
    return turns


def build_conversation(turns: list[dict], template: Conversation, sample_id: Any) -> Conversation:
    """Fill a copy of ``template`` with the sample's turns (a leading non-human turn is skipped, as LLaVA does)."""
    conv = template.copy()
    # A fresh conversation: the template's example turns (v0) are not part of training, as in LLaVA.
    conv.messages, conv.offset = [], 0
    if turns and ROLE_OF.get(turns[0].get("from")) != 0:
        turns = turns[1:]
    for k, turn in enumerate(turns):
        role = ROLE_OF.get(turn.get("from"))
        if role is None:
            raise SampleError(f"Sample {sample_id}: turn {k} has unknown speaker {turn.get('from')!r} (use human/gpt).")
        if role != k % 2:
            raise SampleError(f"Sample {sample_id}: turn {k} breaks the human/gpt alternation.")
        value = turn["value"]
        if template.sep_style == SeparatorStyle.PLAIN and role == 0:
            # Pretraining keeps only the image(s) of the human turn; the caption is the target.
            value = DEFAULT_IMAGE_TOKEN * value.count(DEFAULT_IMAGE_TOKEN)
        conv.append_message(conv.roles[role], value)
    if not conv.messages:
        raise SampleError(f"Sample {sample_id}: the conversation is empty; give it a human turn and a gpt reply.")
    if not any(role == conv.roles[1] for role, _ in conv.messages):
        raise SampleError(
            f"Sample {sample_id}: no assistant (gpt) turn, so nothing would be learned from it; add the reply or "
            "remove the sample."
        )
    return conv


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    mismatch: bool


def preprocess(conv: Conversation, tokenizer: Any, sample_id: Any = None) -> TokenizedSample:
    """Token ids and labels of a filled conversation: assistant replies and their end text supervised, the rest
    ``IGNORE_INDEX``. Returns ``mismatch=True`` (sample left unsupervised, logged) when a token crosses a reply
    boundary."""
    spans, cursor = [], 0
    for text, supervised in conv.render_pieces():
        if supervised and spans and spans[-1][1] == cursor:
            spans[-1] = (spans[-1][0], cursor + len(text))  # consecutive replies (plain) form one span
        elif supervised:
            spans.append((cursor, cursor + len(text)))
        cursor += len(text)
    prompt = conv.get_prompt()
    ids, offsets = tokenize_image_prompt(prompt, tokenizer, with_offsets=True)
    labels = [IGNORE_INDEX] * len(ids)
    mismatch = False
    for start, end in spans:
        for t, (a, b) in enumerate(offsets):
            if b <= start or a >= end or b == a or ids[t] == IMAGE_TOKEN_INDEX:
                continue
            outside = prompt[a:start] + prompt[end:b]
            if outside.strip():
                mismatch = True
            labels[t] = ids[t]
    if mismatch:
        logger.warning(
            "Tokenisation mismatch in sample %s: a token crosses an assistant-reply boundary; the sample is not "
            "supervised. Prompt: %r",
            sample_id,
            prompt[:200],
        )
        labels = [IGNORE_INDEX] * len(ids)
    return TokenizedSample(ids, labels, mismatch)


def load_records(path: str) -> list[dict]:
    """A JSON list or JSONL file of samples; errors name the file and line."""
    reason = missing_reason(path) if path else "does not exist"
    if reason:
        raise FileNotFoundError(f"--data_path {path} {reason}; pass the training JSON/JSONL file.")
    records = [row for _, row in read_jsonl(path)] if path.endswith(".jsonl") else read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a JSON list of samples (or one JSON object per line in a .jsonl file).")
    if not records:
        raise ValueError(f"{path} holds no samples.")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: sample {index} is a {type(record).__name__}, expected an object {{id, image, conversations}}.")
    return records


def word_count(record: dict) -> int:
    """Words in a record's turns (0 for a malformed record: it is reported when the sample is used)."""
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return 0
    return sum(len(t["value"].split()) for t in turns if isinstance(t, dict) and isinstance(t.get("value"), str))


def image_files(record: dict, sample_id: Any = None) -> list[str]:
    """The sample's image paths; an ``image`` that is neither a path nor a list of paths (a number, an object) is a
    bad sample named with its field."""
    image = record.get("image")
    if image is None:
        return []
    if isinstance(image, str):
        return [image]
    if isinstance(image, list) and all(isinstance(name, str) for name in image):
        return list(image)
    raise SampleError(f"Sample {sample_id}: 'image' must be a path or a list of paths, not a "
                      f"{type(image).__name__} ({str(image)[:40]}); fix that record.")


class LazySupervisedDataset(Dataset):
    """LLaVA's instruction data: ``{id, image?, conversations: [{from, value}, ...]}``.

    Items are ``{input_ids, labels, images, id, sample_id}``; ``images`` holds one pixel tensor per ``<image>``, or
    one dummy (zeros) for a text-only sample when the model is multimodal (so every rank runs the vision path).
    ``sample_id`` names the sample in messages (``"<id> (index i)"``).
    """

    def __init__(
        self,
        data_path: str,
        tokenizer: Any,
        template: str,
        image_folder: Optional[str] = None,
        image_processor: Any = None,
        image_aspect_ratio: str = "square",
        num_image_tokens: int = 0,
        model_max_length: Optional[int] = None,
        mm_use_im_start_end: bool = False,
        lazy: bool = True,
        on_bad_sample: str = "skip",
        max_bad_sample_share: float = DEFAULT_MAX_BAD_SAMPLE_SHARE,
    ):
        super().__init__()
        self.data_path = data_path
        self.records = load_records(data_path)
        self.bad_samples = BadSamplePolicy(
            len(self.records), on_bad_sample, max_bad_sample_share, image_folder=image_folder, source=data_path
        )
        self.tokenizer = tokenizer
        self.template = get_conv_template(template)
        self.image_folder = image_folder
        self.image_processor = image_processor
        self.image_aspect_ratio = image_aspect_ratio
        self.num_image_tokens = num_image_tokens
        self.model_max_length = model_max_length or tokenizer.model_max_length
        self.mm_use_im_start_end = mm_use_im_start_end
        self.mismatches = 0
        self._cache: dict[int, TokenizedSample] = {}
        if not lazy:
            for i in tqdm(range(len(self.records)), desc="tokenising"):
                try:
                    self._tokenized(i)
                except SampleError as err:
                    self.bad_samples.record_bad(i, err)
                else:
                    self.bad_samples.record_good(i)  # an image that fails later still turns it bad

    def __len__(self) -> int:
        return len(self.records)

    def _sample_id(self, i: int) -> str:
        return f"{self.records[i].get('id', '?')} (index {i} of {self.data_path})"

    @property
    def lengths(self) -> list[int]:
        """Rough length of each sample in words, images counted as 128 (as LLaVA estimates)."""
        return [word_count(r) + (128 if r.get("image") else 0) for r in self.records]

    @property
    def modality_lengths(self) -> list[int]:
        """Word lengths, negative for text-only samples (the sign is the modality for grouping)."""
        out = []
        for r in self.records:
            n = word_count(r)
            out.append(n if r.get("image") else -n)
        return out

    def _tokenized(self, i: int) -> TokenizedSample:
        if i in self._cache:
            return self._cache[i]
        record, sample_id = self.records[i], self._sample_id(i)
        if not isinstance(record.get("conversations"), list):
            raise SampleError(f"Sample {sample_id} has no 'conversations' list; give it [{{from, value}}, ...].")
        n_images = len(image_files(record, sample_id))
        turns = normalise_image_tokens(
            record["conversations"], n_images, sample_id, self.mm_use_im_start_end, self.template.mmtag
        )
        sample = preprocess(build_conversation(turns, self.template, sample_id), self.tokenizer, sample_id)
        self.mismatches += int(sample.mismatch)
        sample = self._truncate(sample, n_images, sample_id)
        self._cache[i] = sample
        return sample

    def _truncate(self, sample: TokenizedSample, n_images: int, sample_id: str) -> TokenizedSample:
        """Cut text so the sequence with image features spliced in fits ``model_max_length``; never cut an image."""
        extra = n_images * max(self.num_image_tokens - 1, 0)
        limit = self.model_max_length - extra
        if len(sample.input_ids) <= limit:
            return sample
        kept = sample.input_ids[: max(limit, 0)]
        if kept.count(IMAGE_TOKEN_INDEX) != n_images:
            raise SampleError(
                f"Sample {sample_id} is too long: with {n_images} image(s) of {self.num_image_tokens} tokens it does "
                f"not fit --model_max_length {self.model_max_length} without cutting an image; raise "
                "--model_max_length or shorten the sample.",
                BadSampleCause.TOO_LONG,
            )
        labels = sample.labels[: len(kept)]
        if not sample.mismatch and all(label == IGNORE_INDEX for label in labels):
            raise SampleError(
                f"Sample {sample_id} is too long: {len(sample.input_ids) + extra} tokens, and no answer token is left "
                f"within --model_max_length {self.model_max_length}; raise --model_max_length or shorten the prompt.",
                BadSampleCause.TOO_LONG,
            )
        return TokenizedSample(kept, labels, sample.mismatch)

    def _load_image(self, name: str, sample_id: str) -> torch.Tensor:
        """The sample's image through ``mung.images.load_image`` (the one decoding of every path, so training sees
        what evaluation and the user see), padded and processed."""
        try:
            image = load_image(name, folder=self.image_folder or None)
        except ImageMissing as err:
            raise SampleError(f"Sample {sample_id}: {err}", BadSampleCause.MISSING_IMAGE) from None
        except ImageLoadError as err:
            raise SampleError(f"Sample {sample_id}: {err}", BadSampleCause.UNREADABLE_IMAGE) from None
        path = os.path.join(self.image_folder or "", name)
        if min(image.size) < 1:
            raise SampleError(
                f"Sample {sample_id}: image {path} has size {image.size}; replace it or remove the sample.",
                BadSampleCause.UNREADABLE_IMAGE,
            )
        if self.image_aspect_ratio == "pad":
            image = expand2square(image, tuple(int(round(x * 255)) for x in self.image_processor.image_mean))
        try:
            return self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        except ValueError as err:
            raise SampleError(
                f"Sample {sample_id}: the image processor cannot resize image {path} of size {image.size} ({err}); "
                "use --image_aspect_ratio pad, or crop/pad the image.",
                BadSampleCause.UNREADABLE_IMAGE,
            ) from err

    def _dummy_image(self) -> torch.Tensor:
        """Zeros shaped like the processor's output (the shape is learned once from a blank image)."""
        if getattr(self, "_dummy", None) is None:
            blank = Image.new("RGB", (32, 32))
            self._dummy = torch.zeros_like(self.image_processor(images=[blank], return_tensors="pt")["pixel_values"][0])
        return self._dummy

    @property
    def skipped(self) -> int:
        """Distinct bad samples met so far (this process and its data-loader workers)."""
        return self.bad_samples.skipped

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Sample ``i``, or (``on_bad_sample="skip"``) the next good one after it."""
        return self.bad_samples.first_good(i, self._item)

    def _item(self, i: int) -> dict[str, Any]:
        sample = self._tokenized(i)
        sample_id = self._sample_id(i)
        names = image_files(self.records[i], sample_id)
        if names and self.image_processor is None:
            raise SampleError(f"Sample {sample_id} has images but the model has no vision tower (--vision_tower).")
        images = [self._load_image(name, sample_id) for name in names]
        if not images and self.image_processor is not None:
            images = [self._dummy_image()]
        return {
            "input_ids": torch.tensor(sample.input_ids, dtype=torch.long),
            "labels": torch.tensor(sample.labels, dtype=torch.long),
            "images": images,
            "id": self.records[i].get("id"),
            "sample_id": sample_id,
        }


@dataclass
class DataCollatorForSupervisedDataset:
    """Right-pads ids (pad id) and labels (``IGNORE_INDEX``); the attention mask comes from the lengths; all images
    of the batch are stacked in order. ``return_sample_ids`` adds ``sample_ids`` (a list naming each sample, for
    error messages; a Trainer with ``NonFiniteGuardMixin`` removes it before the forward)."""

    tokenizer: Any
    return_sample_ids: bool = False

    def __call__(self, instances: Sequence[dict]) -> dict[str, Any]:
        longest = max(len(x["input_ids"]) for x in instances)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token before training.")
        batch = len(instances)
        input_ids = torch.full((batch, longest), pad_id, dtype=torch.long)
        labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, longest), dtype=torch.long)
        for row, x in enumerate(instances):
            n = len(x["input_ids"])
            input_ids[row, :n] = x["input_ids"]
            labels[row, :n] = x["labels"]
            attention_mask[row, :n] = 1
        out: dict[str, Any] = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        images = [img for x in instances for img in x.get("images", [])]
        if images:
            out["images"] = torch.stack(images)
        if self.return_sample_ids:
            out[SAMPLE_IDS_KEY] = [x.get("sample_id", x.get("id")) for x in instances]
        return out


def make_supervised_data_module(
    tokenizer: Any, data_args: Any, model_args: Any, training_args: Any, model: Any, return_sample_ids: bool = False
) -> dict:
    """Dataset and collator for the Trainer (``return_sample_ids`` for a Trainer with ``NonFiniteGuardMixin``)."""
    tower = model.get_vision_tower() if hasattr(model, "get_vision_tower") else None
    processor = tower.image_processor if tower is not None else None
    dataset = LazySupervisedDataset(
        data_args.data_path,
        tokenizer,
        template=model_args.version,
        image_folder=data_args.image_folder,
        image_processor=processor,
        image_aspect_ratio=data_args.image_aspect_ratio,
        num_image_tokens=tower.num_patches if tower is not None else 0,
        model_max_length=training_args.model_max_length,
        mm_use_im_start_end=model_args.mm_use_im_start_end,
        lazy=data_args.lazy_preprocess,
        on_bad_sample=getattr(data_args, "on_bad_sample", "skip"),
        max_bad_sample_share=getattr(data_args, "max_bad_sample_share", DEFAULT_MAX_BAD_SAMPLE_SHARE),
    )
    collator = DataCollatorForSupervisedDataset(tokenizer, return_sample_ids=return_sample_ids)
    return {"train_dataset": dataset, "eval_dataset": None, "data_collator": collator}
