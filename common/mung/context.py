"""Prompts against the model's context length (``LoadedModel.context_len``), decided once for every backbone.

The prompt (image tokens included: ``Backbone.prompt_length``) and the reply (``max_new_tokens``) must fit the
context together; nothing runs past it silently.

- chat and serving (``check_fits``): a prompt that does not fit is refused with the limit, the session goes on; a
  reply budget nobody asked for (a default: ``GenerationSettings.fit_reply``) shrinks to what the context leaves;
- evaluation (``fit_question``): the question text is shortened (its middle is cut, so the beginning and the
  instruction at its end stay) until it fits, and the answer record says so (``metadata.truncated``); a question
  whose images alone do not fit is a bad question.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from .backbones import EncodedPrompt, Prompt

if TYPE_CHECKING:  # annotations only: the API server's module imports this one before any model code
    from .generation import GenerationSettings
    from .loading import LoadedModel

CUT_MARK = " [...] "
MAX_SHORTENINGS = 4


class PromptTooLong(ValueError):
    """A prompt that cannot fit the model's context; the message gives the lengths and what to do."""


def prompt_budget(loaded: LoadedModel, settings: GenerationSettings) -> int:
    """Tokens left for the prompt once ``max_new_tokens`` are kept for the reply (a reply budget that may shrink,
    ``fit_reply``, keeps one)."""
    kept = 1 if settings.fit_reply else settings.max_new_tokens
    budget = loaded.context_len - kept
    if budget < 1:
        raise ValueError(
            f"--max-new-tokens {settings.max_new_tokens} leaves no room for a prompt in the context of "
            f"{loaded.model_name} ({loaded.context_len} tokens); lower it."
        )
    return budget


def check_fits(loaded: LoadedModel, encoded: EncodedPrompt, settings: GenerationSettings,
               what: str = "This message", budget_name: str = "--max-new-tokens") -> GenerationSettings:
    """The settings to answer a chat prompt with: refused (``PromptTooLong``) when, with room for the reply, it does
    not fit the context; a reply budget nobody asked for (``fit_reply``) lowered to what the context leaves.
    ``budget_name`` is what the caller calls the reply budget (a flag, an API field)."""
    length = loaded.backbone.prompt_length(loaded, encoded)
    room = loaded.context_len - length
    if settings.fit_reply and room >= 1:
        return replace(settings, max_new_tokens=min(settings.max_new_tokens, room))
    budget = loaded.context_len - settings.max_new_tokens
    if settings.fit_reply or length > budget:
        if settings.fit_reply:
            kept = "which leaves no room for a reply"
        elif budget < 1:
            kept = (f"and {budget_name} asks for {settings.max_new_tokens} for the reply alone, so no prompt fits; "
                    "lower it")
        else:
            kept = f"{settings.max_new_tokens} of them kept for the reply ({budget_name}), so at most {budget}"
        raise PromptTooLong(
            f"{what} makes the prompt {length} tokens (the chat so far and its images included); the model's context "
            f"is {loaded.context_len} tokens, {kept}. Shorten it, or start a new chat."
        )
    return settings


def _cut_middle(text: str, tokenizer, keep_tokens: int) -> str:
    """``text`` reduced to about ``keep_tokens`` tokens: its first and last halves, joined by ``CUT_MARK``."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    keep_tokens = max(keep_tokens, 0)
    head = tokenizer.decode(ids[: keep_tokens - keep_tokens // 2], skip_special_tokens=True)
    tail = tokenizer.decode(ids[len(ids) - keep_tokens // 2:], skip_special_tokens=True) if keep_tokens // 2 else ""
    return head + CUT_MARK + tail


def fit_question(loaded: LoadedModel, text: str, images: list, settings: GenerationSettings
                 ) -> tuple[EncodedPrompt, Optional[dict]]:
    """(encoded prompt, truncation record or None) of one evaluation question; the question text is shortened until
    the prompt fits with room for the reply. ``PromptTooLong`` when even an almost empty text does not fit."""
    budget = prompt_budget(loaded, settings)
    current = text
    for _ in range(MAX_SHORTENINGS + 1):
        prompt = Prompt.question(current, images)
        prompt.check()
        encoded = loaded.backbone.encode(loaded, prompt)
        length = loaded.backbone.prompt_length(loaded, encoded)
        if length <= budget:
            if current == text:
                return encoded, None
            return encoded, {"question_chars": len(text), "kept_chars": len(current), "context_len": loaded.context_len,
                             "max_new_tokens": settings.max_new_tokens, "prompt_tokens": length}
        text_tokens = len(loaded.tokenizer.encode(current, add_special_tokens=False))
        keep = text_tokens - (length - budget) - 8  # a few tokens of slack for the cut mark and re-tokenising
        if keep < 1 or current.count("<image>"):
            break
        current = _cut_middle(current, loaded.tokenizer, keep)
    raise PromptTooLong(
        f"the prompt is {length} tokens, more than the {budget} the model's context ({loaded.context_len} tokens, "
        f"{settings.max_new_tokens} kept for the answer) leaves, even with the question text shortened"
        + (" (its images alone take more)" if images else "") + "; lower --max-new-tokens or remove the question."
    )


def max_prompt_chars(loaded: LoadedModel) -> int:
    """Characters of text that cannot fit the context whatever they say, found without tokenising them: no token of
    the tokenizer spells more characters than its longest vocabulary entry (byte-level entries spell one character
    per byte or fewer), so a text of n characters is at least n / longest tokens. Twice that, for normalisers that
    shorten text; a server refuses longer texts before they reach the model's single worker."""
    tokens = loaded.tokenizer.convert_ids_to_tokens(list(range(len(loaded.tokenizer))))
    longest = max(len(token) for token in tokens if token)
    return 2 * loaded.context_len * longest
