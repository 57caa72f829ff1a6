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
from typing import TYPE_CHECKING, Any

from ..files import read_json, read_jsonl
from ..images import decode_base64_image
from .mmbench_tsv import OPTION_LETTERS, is_missing, options_of, read_mmbench_tsv

if TYPE_CHECKING:  # the model code (torch) loads when questions are read, not when flags are
    from ..answering import Question

SINGLE_PRED_PROMPT = {
    "en": "Answer with the option's letter from the given choices directly.",
    "cn": "请直接回答选项字母。",
}


def _check_id(question_id: Any, where: str, field: str = "question_id") -> None:
    if question_id is None or isinstance(question_id, bool) or not isinstance(question_id, (str, int, float)):
        got = "no" if question_id is None else f"a {type(question_id).__name__} as"
        raise ValueError(f"{where}: the question has {got} '{field}'; give every question an id (a string or a "
                         "number), unique in the file.")


def question_from_row(row: dict, path: str, line: int, image_folder: str) -> Question:
    """A ``{question_id, text, image?}`` record → ``Question``; a field that is missing or of the wrong type is
    named with the file and line."""
    from ..answering import Question

    where = f"{path}:{line}"
    _check_id(row.get("question_id"), where)
    text = row.get("text")
    if not isinstance(text, str):
        got = "no 'text'" if "text" not in row else f"a {'null' if text is None else type(text).__name__} 'text'"
        raise ValueError(f"{where}: question {row['question_id']!r} has {got}; give the question's text as a string.")
    image = row.get("image")
    if image is not None and not isinstance(image, str):
        raise ValueError(f"{where}: question {row['question_id']!r}: 'image' must be a path relative to "
                         f"--image-folder (a string), not a {type(image).__name__}.")
    return Question(row["question_id"], text, os.path.join(image_folder, image) if image else None, where=where)


def questions_from_jsonl(path: str, image_folder: str) -> list[Question]:
    rows = read_jsonl(path, expected="the question file (--question-file)")
    for line, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line}: a question is an object {{question_id, text, image?}}, not a "
                             f"{type(row).__name__}.")
    return [question_from_row(row, path, line, image_folder) for line, row in rows]


def science_questions(path: str, image_folder: str, single_pred_prompt: bool) -> list[Question]:
    from ..answering import Question

    items = read_json(path, expected="the ScienceQA question file (--question-file)")
    if not isinstance(items, list):
        raise ValueError(f"{path}: a ScienceQA question file is a JSON list of {{id, image?, conversations}}.")
    questions = []
    for i, row in enumerate(items):
        where = f"{path} item {i}"
        if not isinstance(row, dict):
            raise ValueError(f"{where} is a {type(row).__name__}, expected an object {{id, image?, conversations}}.")
        _check_id(row.get("id"), where, "id")
        try:
            text = row["conversations"][0]["value"].replace("<image>", "").strip()
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{where} (id {row.get('id')!r}) has no first conversation turn with a text 'value'."
            ) from err
        if single_pred_prompt:
            text = text + "\n" + SINGLE_PRED_PROMPT["en"]
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise ValueError(f"{where} (id {row['id']!r}): 'image' must be a path relative to --image-folder.")
        image = os.path.join(image_folder, image) if image else None
        questions.append(Question(row["id"], text, image, prompt=("<image>\n" + text) if image else text, where=where))
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
    from ..answering import Question

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
            questions.append(Question(index, text, image, prompt=text, where=f"{path} index {row['index']}", extra={
                "round_id": round_id, "options": list(options), "option_char": list(letters)}))
            options = options[1:] + options[:1]
            letters = letters[1:] + letters[:1]
    return questions
