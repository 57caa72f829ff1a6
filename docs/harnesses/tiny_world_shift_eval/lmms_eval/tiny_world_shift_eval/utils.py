"""lmms-eval task tiny_world_shift_eval, made by `python -m mung.harnesses.export` (MuNG) from shift_eval_questions.jsonl.
Scoring (first-word): first word, lower-cased, punctuation stripped (the tiny world's scorer); "accuracy" is the share of questions answered right."""

import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

import string  # noqa: F401  (the first-word rule strips string.punctuation)


def normalize_answer(text: str) -> str:
    """The first word, lower-cased, with surrounding punctuation stripped ("Red." -> "red")."""
    words = text.strip().split()
    return words[0].lower().strip(string.punctuation) if words else ""


normalize = normalize_answer


def doc_to_visual(doc):
    """The question's image in RGB, or none for a text-only question."""
    if not doc.get("image"):
        return []
    with Image.open(os.path.join(HERE, doc["image"])) as image:
        return [image.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The question's text as the question file gives it."""
    return doc["question"]


def process_results(doc, results):
    """Whether the reply matches the truth under the rule above."""
    prediction = results[0] if results else ""
    return {"accuracy": float(normalize(prediction) == normalize(doc["answer"]))}
