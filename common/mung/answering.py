"""The answering loop behind every evaluation entry point of every backbone.

Questions are encoded by the backbone (in DataLoader workers, so images decode while the model works), left-padded
into batches, answered with ``generate`` and written as one record per question in LLaVA's answer format:
``{question_id, prompt, text, answer_id, model_id, metadata: {noise_mode, seed}}`` plus any extra fields of the
question. Under greedy decoding a batch gives each question the answer it gets alone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from .backbones import EncodedPrompt, Prompt
from .files import ensure_parent
from .generation import GenerationSettings, StopStringCriteria, cut_at_stop
from .images import load_image
from .loading import LoadedModel

ImageRef = Union[str, Callable[[], Image.Image], None]


@dataclass
class Question:
    """One question: ``text`` (``<image>`` where the image goes, else it goes first), ``image`` (a path or URL, a
    function returning a PIL image, or None), ``prompt`` (the record's ``prompt`` field; default ``text``) and
    ``extra`` fields copied into the record (e.g. MMBench's ``round_id``)."""

    question_id: Any
    text: str
    image: ImageRef = None
    prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def load_image(self) -> Optional[Image.Image]:
        if self.image is None:
            return None
        return self.image() if callable(self.image) else load_image(self.image)


@dataclass
class Reply:
    """One generated answer: its text (cut at the first stop string), how many tokens were generated for it, and why
    generation ended: ``stop`` (end of sequence or a stop string) or ``length`` (the new-token budget ran out)."""

    text: str
    new_tokens: int
    finish_reason: str


def _reply(loaded: LoadedModel, row: torch.Tensor, text: str, stops: Sequence[str], budget: int) -> Reply:
    """Count a row's generated tokens (the padding after a finished row excluded) and tell how it ended."""
    ids = row.tolist()
    count = len(ids)
    while count and ids[count - 1] == loaded.tokenizer.pad_token_id:
        count -= 1
    ended = count > 0 and ids[count - 1] in set(loaded.tokenizer.all_special_ids)  # end of sequence
    hit_stop = any(stop and stop in text for stop in stops)
    reason = "length" if count >= budget and not (ended or hit_stop) else "stop"
    return Reply(cut_at_stop(text, stops), count, reason)


def generate_replies(
    loaded: LoadedModel,
    batch: dict[str, Any],
    settings: GenerationSettings,
    streamer: Any = None,
    stop_strings: Sequence[str] = (),
    stopping: Sequence[StoppingCriteria] = (),
) -> list[Reply]:
    """Answers of a collated batch with their token counts: generate, decode the new tokens, cut at the backbone's
    stop strings and any extra ``stop_strings``; ``stopping`` adds criteria (e.g. a cancel flag)."""
    stops = list(loaded.backbone.stop_strings(loaded)) + [s for s in stop_strings if s]
    kwargs = settings.generate_kwargs()
    criteria = ([StopStringCriteria(stops, loaded.tokenizer)] if stops else []) + list(stopping)
    if criteria:
        kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
    if streamer is not None:
        kwargs["streamer"] = streamer
    with torch.inference_mode():
        new_tokens = loaded.backbone.generate(loaded, batch, noise_mode=loaded.noise_mode, **kwargs)
    texts = loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [_reply(loaded, row, text, stops, settings.max_new_tokens) for row, text in zip(new_tokens, texts)]


def generate_texts(
    loaded: LoadedModel,
    batch: dict[str, Any],
    settings: GenerationSettings,
    streamer: Any = None,
) -> list[str]:
    """Answers of a collated batch: generate, decode the new tokens, cut at the backbone's stop strings."""
    return [reply.text for reply in generate_replies(loaded, batch, settings, streamer)]


def answer_prompt(loaded: LoadedModel, prompt: Prompt, settings: GenerationSettings, streamer: Any = None
                  ) -> tuple[str, EncodedPrompt]:
    """(answer, encoded prompt) of one chat."""
    prompt.check()
    encoded = loaded.backbone.encode(loaded, prompt)
    batch = loaded.backbone.collate(loaded, [encoded])
    return generate_texts(loaded, batch, settings, streamer)[0], encoded


class QuestionDataset(Dataset):
    """Each question encoded by the backbone (image loading happens in DataLoader workers)."""

    def __init__(self, questions: Sequence[Question], loaded: LoadedModel):
        self.questions = list(questions)
        self.loaded = loaded

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> tuple[int, EncodedPrompt]:
        question = self.questions[index]
        image = question.load_image()
        prompt = Prompt.question(question.text, [image] if image is not None else [])
        prompt.check()
        return index, self.loaded.backbone.encode(self.loaded, prompt)


def answer_questions(
    questions: Sequence[Question],
    loaded: LoadedModel,
    settings: GenerationSettings,
    answers_file: str,
    batch_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
) -> list[dict]:
    """Answer ``questions`` in order, writing one jsonl record per question (flushed per batch); returns them."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if settings.num_beams > 1 and batch_size > 1:
        raise ValueError("--num_beams > 1 needs --batch-size 1")
    dataset = QuestionDataset(questions, loaded)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=list)
    metadata = {"noise_mode": loaded.noise_label, "seed": seed}
    ensure_parent(answers_file)
    records = []
    with open(answers_file, "w", encoding="utf-8") as out:
        for batch in tqdm(loader, total=len(loader), desc=f"answering ({batch_size}/batch)", unit="batch"):
            inputs = loaded.backbone.collate(loaded, [encoded for _, encoded in batch])
            texts = generate_texts(loaded, inputs, settings)
            for (index, _), text in zip(batch, texts):
                question = dataset.questions[index]
                record = {
                    "question_id": question.question_id,
                    "prompt": question.prompt if question.prompt is not None else question.text,
                    "text": text,
                    "answer_id": uuid.uuid4().hex[:22],
                    "model_id": loaded.model_name,
                    "metadata": dict(metadata),
                    **question.extra,
                }
                records.append(record)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return records
