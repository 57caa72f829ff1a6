"""The one prompt/image/generation path behind every LLaVA eval script, ``run_llava`` and the CLI.

- ``add_model_args`` / ``add_generation_args``: the original flags plus ``--noise-mode``, ``--seed``, ``--device``.
- ``load_for_inference``: ``load_pretrained_model`` on the chosen device, the noise mode checked against the model.
- ``user_message`` / ``build_prompt``: a question → the conversation template's generation prompt.
- ``load_image``: a file path or URL → RGB PIL image, with one clear error type (``ImageLoadError``).
- ``QuestionDataset`` + ``answer_questions``: DataLoader over questions, batched greedy (or sampled) generation
  with left padding, one answer record per question, written to the answers jsonl with a progress bar.
"""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from transformers import StoppingCriteriaList, set_seed

from ..constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from ..conversation import SeparatorStyle, conv_templates
from ..mm_utils import KeywordsStoppingCriteria, get_model_name_from_path, process_images, tokenizer_image_token
from ..jsonl import ensure_parent

NOISE_MODES = ("sample", "mean", "off")


class ImageLoadError(ValueError):
    """An image file or URL could not be read; the message says which and why."""


# ----------------------------------------------------------------------------------------------------- flags
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_model_args(parser) -> None:
    parser.add_argument("--model-path", type=str, required=True)
    parser.add_argument("--model-base", type=str, default=None)
    parser.add_argument("--conv-mode", type=str, default="llava_v1")
    parser.add_argument("--device", type=str, default=default_device(), help="cuda, cuda:N or cpu (float32)")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default=None,
                        help="noise generator mode at inference (default: the checkpoint's inference_mode)")
    parser.add_argument("--seed", type=int, default=0, help="seeds noise sampling and temperature sampling")


def add_generation_args(parser) -> None:
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--max_new_tokens", type=int, default=128)


# ----------------------------------------------------------------------------------------------------- model
@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    image_processor: Any
    context_len: int
    model_name: str
    noise_mode: Optional[str]

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype


def noise_generator_of(model) -> Any:
    return getattr(model.get_model(), "noise_generator", None)


def resolve_noise_mode(model, noise_mode: Optional[str]) -> Optional[str]:
    """The mode passed to ``generate``: None keeps the generator's ``inference_mode``.

    Asking for sample/mean noise from a checkpoint without a generator is an error (it would silently do nothing).
    """
    generator = noise_generator_of(model)
    if noise_mode is None or noise_mode == "off":
        return noise_mode
    if generator is None:
        raise ValueError(f"--noise-mode {noise_mode}: this checkpoint has no noise generator; use --noise-mode off "
                         "or leave the flag out.")
    return noise_mode


def describe_noise(model, noise_mode: Optional[str]) -> str:
    generator = noise_generator_of(model)
    if generator is None:
        return "off (no generator)"
    return noise_mode or f"{generator.config.inference_mode} (checkpoint default)"


def load_for_inference(args, load_8bit: bool = False, load_4bit: bool = False) -> LoadedModel:
    """Seed, load the checkpoint on ``args.device`` and check ``args.noise_mode`` against it."""
    from ..model.builder import load_pretrained_model  # heavy import, only when a model is needed

    set_seed(args.seed)
    model_path = os.path.expanduser(args.model_path)
    model_name = get_model_name_from_path(model_path)
    device = args.device
    tokenizer, model, image_processor, context_len = load_pretrained_model(
        model_path, args.model_base, model_name, load_8bit=load_8bit, load_4bit=load_4bit, device=device,
        device_map="auto" if device == "cuda" else {"": device},
    )
    mode = resolve_noise_mode(model, args.noise_mode)
    return LoadedModel(tokenizer, model, image_processor, context_len, model_name, mode)


# ----------------------------------------------------------------------------------------------------- prompts
def user_message(text: str, has_image: bool, mm_use_im_start_end: bool) -> str:
    """The user turn: the image token(s) first (as in training), then the text."""
    if not has_image:
        return text
    return image_token(mm_use_im_start_end) + "\n" + text


def image_token(mm_use_im_start_end: bool) -> str:
    """The text that stands for one image in a message."""
    if mm_use_im_start_end:
        return DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN
    return DEFAULT_IMAGE_TOKEN


def conversation(conv_mode: str):
    if conv_mode not in conv_templates:
        raise ValueError(f"--conv-mode {conv_mode!r} is unknown; choose one of {', '.join(sorted(conv_templates))}")
    return conv_templates[conv_mode].copy()


def build_prompt(text: str, has_image: bool, conv_mode: str, mm_use_im_start_end: bool = False) -> str:
    """Generation prompt of a one-turn conversation asking ``text`` (about an image when ``has_image``)."""
    conv = conversation(conv_mode)
    conv.append_message(conv.roles[0], user_message(text, has_image, mm_use_im_start_end))
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def stop_string(conv) -> Optional[str]:
    """The text that ends an assistant turn in this template (None when the template has none)."""
    if conv.sep_style in (SeparatorStyle.TWO, SeparatorStyle.LLAMA_2):
        return conv.sep2 or None
    return conv.sep or None  # plain: the "\n" that ends a caption


# ----------------------------------------------------------------------------------------------------- images
def load_image(source: str, timeout: float = 10.0) -> Image.Image:
    """An RGB image from a local path or an http(s) URL; any failure is an ``ImageLoadError`` naming the source."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise ImageLoadError(f"cannot download image {source}: {reason}. Without network access, pass a local "
                                 "file instead.") from err
        name = source
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as err:
            raise ImageLoadError(f"cannot read image file {source}: {err.strerror or err}") from err
        name = source
    return decode_image_bytes(data, name)


def decode_image_bytes(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{name} is not a readable image (PIL does not recognise its format)") from err
    except OSError as err:
        raise ImageLoadError(f"{name} is not a readable image ({err})") from err
    return image.convert("RGB")


def decode_base64_image(data: str, name: str = "base64 image") -> Image.Image:
    try:
        raw = base64.b64decode(data, validate=False)
    except ValueError as err:
        raise ImageLoadError(f"{name}: invalid base64 image data ({err})") from err
    return decode_image_bytes(raw, name)


def image_tensor(images: Sequence[Image.Image], loaded: LoadedModel) -> torch.Tensor:
    """Pixel values [N, 3, H, W] on the model's device and dtype."""
    if loaded.image_processor is None:
        raise ValueError(f"{loaded.model_name} has no vision tower; it cannot answer questions about images.")
    pixels = process_images(list(images), loaded.image_processor, loaded.model.config)
    return pixels.to(device=loaded.device, dtype=loaded.dtype)


# ----------------------------------------------------------------------------------------------------- generation
def generation_kwargs(args) -> dict:
    sample = args.temperature > 0
    kwargs = {"do_sample": sample, "num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens,
              "use_cache": True}
    if sample:
        kwargs["temperature"] = args.temperature
        if args.top_p is not None:
            kwargs["top_p"] = args.top_p
    else:  # greedy: clear sampling defaults a checkpoint's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return candidate
    return 0


def generate(
    loaded: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    images: Optional[torch.Tensor],
    gen_kwargs: dict,
    stop_str: Optional[str] = None,
    streamer: Any = None,
) -> list[str]:
    """Answers for a batch of tokenised prompts (``-200`` = image) with ``images`` (one per placeholder, in order).

    Prompts are left-padded (the model re-pads after the splice and positions follow the mask), so a batch gives
    each prompt the same greedy answer as running it alone, up to floating-point differences of padded matmuls.
    """
    tokenizer, model = loaded.tokenizer, loaded.model
    longest = max(len(ids) for ids in input_ids)
    pad = pad_id(tokenizer)
    ids = torch.full((len(input_ids), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(input_ids), longest), dtype=torch.long)
    for row, seq in enumerate(input_ids):
        ids[row, longest - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, longest - len(seq):] = 1
    extra = {}
    if stop_str and stop_str != tokenizer.eos_token:
        extra["stopping_criteria"] = StoppingCriteriaList([KeywordsStoppingCriteria([stop_str], tokenizer)])
    if streamer is not None:
        extra["streamer"] = streamer
    output = model.generate(
        inputs=ids.to(loaded.device), attention_mask=mask.to(loaded.device), images=images,
        noise_mode=loaded.noise_mode, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **gen_kwargs, **extra,
    )
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    return [cut_at_stop(t, stop_str) for t in texts]


def cut_at_stop(text: str, stop_str: Optional[str]) -> str:
    if stop_str and stop_str in text:
        text = text[: text.index(stop_str)]
    return text.strip()


# ----------------------------------------------------------------------------------------------------- questions
ImageSource = Union[str, Callable[[], Image.Image], None]


@dataclass
class Question:
    """One question to answer.

    ``text``: the user message without image token; ``image``: a path/URL, a function returning a PIL image
    (e.g. a base64 decoder), or None (text only); ``prompt``: the answer record's ``prompt`` field; ``extra``:
    more fields for the record (e.g. MMBench's round_id).
    """

    question_id: Any
    text: str
    image: ImageSource = None
    prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)


class QuestionDataset(Dataset):
    """Tokenised prompt and preprocessed pixels per question (image loading happens in DataLoader workers)."""

    def __init__(self, questions: Sequence[Question], loaded: LoadedModel, conv_mode: str):
        self.questions = list(questions)
        self.tokenizer = loaded.tokenizer
        self.image_processor = loaded.image_processor
        self.model_config = loaded.model.config
        self.conv_mode = conv_mode
        self.use_start_end = bool(getattr(loaded.model.config, "mm_use_im_start_end", False))
        conversation(conv_mode)  # unknown template: fail before any work

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int):
        q = self.questions[index]
        pixels = None
        if q.image is not None:
            image = q.image() if callable(q.image) else load_image(q.image)
            if self.image_processor is None:
                raise ValueError("this checkpoint has no vision tower; it cannot answer questions about images.")
            pixels = process_images([image], self.image_processor, self.model_config)[0]
        prompt = build_prompt(q.text, pixels is not None, self.conv_mode, self.use_start_end)
        ids = tokenizer_image_token(prompt, self.tokenizer, IMAGE_TOKEN_INDEX)
        return index, ids, pixels


def _collate(batch):
    return batch


def answer_questions(
    questions: Sequence[Question],
    loaded: LoadedModel,
    args,
    answers_file: str,
    batch_size: int = 1,
    num_workers: int = 0,
) -> list[dict]:
    """Answer ``questions`` in order, writing one jsonl record per question (flushed per batch); returns them."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if args.num_beams > 1 and batch_size > 1:
        raise ValueError("--num_beams > 1 needs --batch-size 1")
    dataset = QuestionDataset(questions, loaded, args.conv_mode)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    gen_kwargs = generation_kwargs(args)
    stop_str = stop_string(conversation(args.conv_mode))
    metadata = {"noise_mode": describe_noise(loaded.model, loaded.noise_mode), "seed": args.seed}
    ensure_parent(answers_file)
    records = []
    with open(answers_file, "w", encoding="utf-8") as out:
        for batch in tqdm(loader, total=len(loader), desc=f"answering ({batch_size}/batch)", unit="batch"):
            pixels = [p for _, _, p in batch if p is not None]
            images = torch.stack(pixels).to(device=loaded.device, dtype=loaded.dtype) if pixels else None
            texts = generate(loaded, [ids for _, ids, _ in batch], images, gen_kwargs, stop_str)
            for (index, _, _), text in zip(batch, texts):
                q = dataset.questions[index]
                record = {
                    "question_id": q.question_id,
                    "prompt": q.prompt if q.prompt is not None else q.text,
                    "text": text,
                    "answer_id": uuid.uuid4().hex[:22],
                    "model_id": loaded.model_name,
                    "metadata": dict(metadata),
                    **q.extra,
                }
                records.append(record)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return records


# ----------------------------------------------------------------------------------------------------- conv mode
def infer_conv_mode(model, tokenizer) -> str:
    """The conversation template a checkpoint was trained with, from its config and tokenizer (never its folder).

    Order: a template name recorded in the config (``conv_mode`` or the training ``version``); ChatML markers in
    the tokenizer → chatml_direct; a Llama-2 ``[INST]`` chat template in the tokenizer → llava_llama_2; otherwise
    vicuna_v1 (LLaVA-1.5's ``--version v1``).
    """
    config = model.config
    for key in ("conv_mode", "version"):
        name = getattr(config, key, None)
        if isinstance(name, str) and name in conv_templates:
            return name
    vocab = tokenizer.get_vocab()
    if "<|im_start|>" in vocab:
        return "chatml_direct"
    if "[INST]" in str(getattr(tokenizer, "chat_template", "") or ""):
        return "llava_llama_2"
    return "vicuna_v1"
