"""Question files of the evaluation entry points → ``Question`` lists (the formats of LLaVA's eval scripts).

- jsonl (``model_vqa_loader``, ``model_vqa``): ``{question_id, text, image?}`` per line, image relative to the
  image folder;
- ScienceQA (``model_vqa_science``): a JSON list of ``{id, image?, conversations}``; the first human turn is the
  question;
- MMBench (``model_vqa_mmbench``): a TSV of hint, question, options A–D and a base64 image per row.
"""

from __future__ import annotations

import functools
import os

from ..answering import Question
from ..files import read_json, read_jsonl
from ..images import decode_base64_image
from .mmbench_tsv import OPTION_LETTERS, is_missing, options_of, read_mmbench_tsv

SINGLE_PRED_PROMPT = {
    "en": "Answer with the option's letter from the given choices directly.",
    "cn": "请直接回答选项字母。",
}


def questions_from_jsonl(path: str, image_folder: str) -> list[Question]:
    questions = []
    for line, row in read_jsonl(path, expected="the question file (--question-file)"):
        if not isinstance(row, dict) or "question_id" not in row or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{line}: a question needs 'question_id' and a text 'text' field.")
        image = os.path.join(image_folder, row["image"]) if row.get("image") else None
        questions.append(Question(row["question_id"], row["text"], image))
    return questions


def science_questions(path: str, image_folder: str, single_pred_prompt: bool) -> list[Question]:
    questions = []
    for i, row in enumerate(read_json(path, expected="the ScienceQA question file (--question-file)")):
        try:
            text = row["conversations"][0]["value"].replace("<image>", "").strip()
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: item {i} (id {row.get('id')!r}) has no first conversation turn.") from err
        if single_pred_prompt:
            text = text + "\n" + SINGLE_PRED_PROMPT["en"]
        image = os.path.join(image_folder, row["image"]) if row.get("image") else None
        questions.append(Question(row["id"], text, image, prompt=("<image>\n" + text) if image else text))
    return questions


def _mmbench_text(row: dict, options: list[str], single_pred_prompt: bool, lang: str) -> str:
    text = row["question"]
    if not is_missing(row.get("hint")):
        text = row["hint"] + "\n" + text
    for letter, option in zip(OPTION_LETTERS, options):
        text += "\n" + letter + ". " + option
    if single_pred_prompt:
        text += "\n" + SINGLE_PRED_PROMPT[lang]
    return text


def mmbench_questions(path: str, all_rounds: bool, single_pred_prompt: bool, lang: str) -> list[Question]:
    """One question per row, or per rotation of its options with ``all_rounds`` (circular evaluation)."""
    _, rows = read_mmbench_tsv(path)
    questions = []
    for row in rows:
        options = options_of(row)
        letters = OPTION_LETTERS[: len(options)]
        image = (functools.partial(decode_base64_image, row["image"], f"{path} index {row['index']}")
                 if not is_missing(row.get("image")) else None)
        index = int(row["index"]) if row["index"].lstrip("-").isdigit() else row["index"]
        for round_id in range(len(options) if all_rounds else 1):
            text = _mmbench_text(row, options, single_pred_prompt, lang)
            questions.append(Question(index, text, image, prompt=text, extra={
                "round_id": round_id, "options": list(options), "option_char": list(letters)}))
            options = options[1:] + options[:1]
            letters = letters[1:] + letters[:1]
    return questions
