"""The answering loop behind every evaluation entry point of every backbone.

Questions are encoded by the backbone (in DataLoader workers, so images decode while the model works), left-padded
into batches, answered with ``generate`` and written as one record per question in LLaVA's answer format:
``{question_id, prompt, text, answer_id, model_id, metadata: {noise_mode, seed}}`` plus any extra fields of the
question. Under greedy decoding a batch gives each question the answer it gets alone, and sampled noise is drawn per
question from ``--seed`` and its ``question_id`` (``noise_seeds``), so chunks, order and batch size do not change it.

What can go wrong with one question does not stop the others (``--on_bad_sample skip``, the default): an image that
cannot be read, ``<image>`` placeholders that do not match its images, a prompt that cannot fit the context. Such a
question is counted, reported (the first few in full, a summary at the end) and gets a record with an empty
``text`` and ``metadata.skipped`` saying why (so every question has a record; scorers count it as unanswered, and a
resumed run asks it again). ``--on_bad_sample raise`` stops at the first. A question text too long for the context is
shortened (``context.fit_question``) and its record says so in ``metadata.truncated``. Answers are written through
``answer_files.PartialAnswers``: atomically at the end, resumable after a crash.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from .answer_files import PartialAnswers, question_keys
from .backbones import IMAGE_PLACEHOLDER, EncodedPrompt, Prompt
from .bad_samples import check_bad_sample_flags
from .context import PromptTooLong, check_fits, fit_question
from .generation import GenerationSettings, StopStringCriteria, cut_at_stop
from .images import ImageLoadError, ImageMissing, load_image
from .loading import LoadedModel
from .noise_seeds import per_sample_noise, question_seed

logger = logging.getLogger(__name__)

ImageRef = Union[str, Callable[[], Image.Image], None]
WARN_FIRST = 5


@dataclass
class Question:
    """One question: ``text`` (``<image>`` where the image goes, else it goes first), ``image`` (a path or URL, a
    function returning a PIL image, or None), ``prompt`` (the record's ``prompt`` field; default ``text``),
    ``extra`` fields copied into the record (e.g. MMBench's ``round_id``) and ``where`` it was read (``file:line``,
    for messages)."""

    question_id: Any
    text: str
    image: ImageRef = None
    prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)
    where: str = ""

    def load_image(self) -> Optional[Image.Image]:
        if self.image is None:
            return None
        return self.image() if callable(self.image) else load_image(self.image)

    def describe(self) -> str:
        return f"question {self.question_id!r}" + (f" ({self.where})" if self.where else "")


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
    noise_seeds: Optional[Sequence[int]] = None,
) -> list[Reply]:
    """Answers of a collated batch with their token counts: generate, decode the new tokens, cut at the backbone's
    stop strings and any extra ``stop_strings``; ``stopping`` adds criteria (e.g. a cancel flag). With
    ``noise_seeds`` (one per row) sampled noise comes from each row's own stream."""
    stops = list(loaded.backbone.stop_strings(loaded)) + [s for s in stop_strings if s]
    kwargs = settings.generate_kwargs()
    criteria = ([StopStringCriteria(stops, loaded.tokenizer)] if stops else []) + list(stopping)
    if criteria:
        kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
    if streamer is not None:
        kwargs["streamer"] = streamer
    seeds = noise_seeds if loaded.noise_mode == "sample" else None
    with torch.inference_mode(), per_sample_noise(loaded.model, seeds):
        new_tokens = loaded.backbone.generate(loaded, batch, noise_mode=loaded.noise_mode, **kwargs)
    texts = loaded.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [_reply(loaded, row, text, stops, settings.max_new_tokens) for row, text in zip(new_tokens, texts)]


def generate_texts(
    loaded: LoadedModel,
    batch: dict[str, Any],
    settings: GenerationSettings,
    streamer: Any = None,
    noise_seeds: Optional[Sequence[int]] = None,
) -> list[str]:
    """Answers of a collated batch: generate, decode the new tokens, cut at the backbone's stop strings. With
    ``noise_seeds`` (one per row) sampled noise comes from each row's own stream."""
    return [reply.text for reply in generate_replies(loaded, batch, settings, streamer, noise_seeds=noise_seeds)]


def answer_prompt(loaded: LoadedModel, prompt: Prompt, settings: GenerationSettings, streamer: Any = None
                  ) -> tuple[str, EncodedPrompt]:
    """(answer, encoded prompt) of one chat; a prompt that cannot fit the context is refused
    (``context.PromptTooLong``) before anything is generated."""
    prompt.check()
    encoded = loaded.backbone.encode(loaded, prompt)
    settings = check_fits(loaded, encoded, settings)
    batch = loaded.backbone.collate(loaded, [encoded])
    return generate_texts(loaded, batch, settings, streamer)[0], encoded


@dataclass
class PreparedQuestion:
    """A question encoded for the model, or why it cannot be answered (``problem``, with its ``cause``)."""

    index: int
    encoded: Optional[EncodedPrompt] = None
    truncated: Optional[dict] = None
    problem: Optional[str] = None
    cause: str = ""


class QuestionDataset(Dataset):
    """Each question encoded by the backbone (image loading happens in DataLoader workers); a question that cannot
    be answered comes back with its problem instead of stopping the loader."""

    def __init__(self, questions: Sequence[Question], loaded: LoadedModel,
                 settings: Optional[GenerationSettings] = None):
        self.questions = list(questions)
        self.loaded = loaded
        self.settings = settings or GenerationSettings()

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> PreparedQuestion:
        question = self.questions[index]
        placed = question.text.count(IMAGE_PLACEHOLDER)
        wanted = int(question.image is not None)
        if placed and placed != wanted:
            return PreparedQuestion(index, cause="<image> in the text", problem=(
                f"its 'text' holds {placed} {IMAGE_PLACEHOLDER} for {wanted} image(s); {IMAGE_PLACEHOLDER} marks where "
                "the question's image goes (without one it goes first), so remove it from the text or fix the "
                "question's 'image'."))
        try:
            image = question.load_image()
        except ImageMissing as err:
            return PreparedQuestion(index, problem=str(err), cause="missing image")
        except ImageLoadError as err:
            return PreparedQuestion(index, problem=str(err), cause="unreadable image")
        images = [image] if image is not None else []
        try:
            encoded, truncated = fit_question(self.loaded, question.text, images, self.settings)
        except ImageLoadError as err:  # decoded, but the backbone cannot use it (e.g. its aspect ratio)
            return PreparedQuestion(index, problem=str(err), cause="unusable image")
        except PromptTooLong as err:
            return PreparedQuestion(index, problem=str(err), cause="too long")
        return PreparedQuestion(index, encoded=encoded, truncated=truncated)


class AnswerReport:
    """Counts of skipped and shortened questions: the first skips are logged in full, a summary at the end."""

    def __init__(self, on_bad_sample: str):
        self.on_bad_sample = on_bad_sample
        self.skipped: Counter = Counter()
        self.truncated = 0

    def skip(self, question: Question, prepared: PreparedQuestion) -> None:
        message = f"{question.describe()}: {prepared.problem}"
        if self.on_bad_sample == "raise":
            raise ValueError(message + " (--on_bad_sample skip answers the other questions and reports this one.)")
        self.skipped[prepared.cause] += 1
        if sum(self.skipped.values()) <= WARN_FIRST:
            logger.warning("Skipping %s", message)

    def finish(self, total: int, answers_file: str) -> None:
        if self.truncated:
            logger.warning("%d of %d question texts were shortened to fit the model's context (metadata.truncated "
                           "in their records of %s).", self.truncated, total, answers_file)
        skipped = sum(self.skipped.values())
        if not skipped:
            return
        causes = ", ".join(f"{n} {cause}" for cause, n in self.skipped.most_common())
        if skipped == total:
            raise ValueError(f"Every question ({total}) was skipped ({causes}); see the first reasons above. Nothing "
                             f"was answered into {answers_file}.")
        logger.warning("Skipped %d of %d questions (%s): their records in %s have an empty text and "
                       "metadata.skipped; a run with the same settings asks them again.", skipped, total, causes,
                       answers_file)


def _record(question: Question, text: str, loaded: LoadedModel, metadata: dict) -> dict:
    return {
        "question_id": question.question_id,
        "prompt": question.prompt if question.prompt is not None else question.text,
        "text": text,
        "answer_id": uuid.uuid4().hex[:22],
        "model_id": loaded.model_name,
        "metadata": metadata,
        **question.extra,
    }


def _answer_batch(batch: list[PreparedQuestion], questions: Sequence[Question], loaded: LoadedModel,
                  settings: GenerationSettings, seed: int, report: AnswerReport) -> list[tuple[int, dict]]:
    """(index, record) of every question of a batch: the good ones answered together, the others skipped."""
    metadata = {"noise_mode": loaded.noise_label, "seed": seed}
    good = [p for p in batch if p.encoded is not None]
    texts = {}
    if good:
        inputs = loaded.backbone.collate(loaded, [p.encoded for p in good])
        seeds = [question_seed(seed, questions[p.index].question_id) for p in good]
        texts = dict(zip((p.index for p in good), generate_texts(loaded, inputs, settings, noise_seeds=seeds)))
    out = []
    for prepared in batch:
        question = questions[prepared.index]
        if prepared.encoded is None:
            report.skip(question, prepared)
            out.append((prepared.index, _record(question, "", loaded, {**metadata, "skipped": prepared.problem})))
            continue
        extra = {}
        if prepared.truncated is not None:
            report.truncated += 1
            extra["truncated"] = prepared.truncated
        out.append((prepared.index, _record(question, texts[prepared.index], loaded, {**metadata, **extra})))
    return out


def run_description(loaded: LoadedModel, settings: GenerationSettings, seed: int) -> dict:
    """What must not change between a partial answers file and the run that continues it."""
    return {"model": loaded.path, "model_id": loaded.model_name, "noise_mode": loaded.noise_label,
            "template": loaded.template, "seed": seed, "generation": asdict(settings), "options": loaded.extra}


def answer_questions(
    questions: Sequence[Question],
    loaded: LoadedModel,
    settings: GenerationSettings,
    answers_file: str,
    batch_size: int = 1,
    num_workers: int = 0,
    seed: int = 0,
    on_bad_sample: str = "skip",
    resume: bool = True,
) -> list[dict]:
    """Answer ``questions`` in order into ``answers_file`` (one jsonl record each; see the module docstring);
    returns the records."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if settings.num_beams > 1 and batch_size > 1:
        raise ValueError("--num_beams > 1 needs --batch-size 1")
    check_bad_sample_flags(on_bad_sample, 1.0)
    keys = question_keys(questions)
    partial = PartialAnswers(answers_file, run_description(loaded, settings, seed), resume)
    done = partial.start()
    todo = [questions[i] for i, key in enumerate(keys) if key not in done]
    todo_keys = [key for key in keys if key not in done]
    dataset = QuestionDataset(todo, loaded, settings)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=list)
    report = AnswerReport(on_bad_sample)
    for batch in tqdm(loader, total=len(loader), desc=f"answering ({batch_size}/batch)", unit="batch"):
        for index, record in _answer_batch(batch, todo, loaded, settings, seed, report):
            partial.add(todo_keys[index], record)
            done[todo_keys[index]] = record
        partial.flush()
    records = [done[key] for key in keys]
    report.finish(len(todo), answers_file)
    partial.finish(records)
    return records
