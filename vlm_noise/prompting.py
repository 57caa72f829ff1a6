"""Chats into model inputs with the processor's own chat template, for any transformers VLM.

A turn's text holds ``<image>`` where each image goes; it becomes the message content items transformers' chat
templates read (``{"type": "image"}`` / ``{"type": "text", "text": ...}``). The template renders the text (with
the family's image markers), then the processor expands the markers into each image's placeholder tokens and
batches the samples the way its family expects (pixel tensors, grids, token types), left-padded for generation.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from PIL import Image

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def content_items(text: str) -> list[dict[str, Any]]:
    """``"a <image> b"`` → text ``a ``, an image, text `` b`` (empty texts dropped)."""
    items: list[dict[str, Any]] = []
    for index, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if index:
            items.append({"type": "image"})
        if piece:
            items.append({"type": "text", "text": piece})
    return items


def messages_of(turns: Sequence[tuple[str, str]], source: str = "the chat") -> list[dict[str, Any]]:
    """(role, text) turns → chat-template messages (roles ``user``/``human``, ``assistant``/``gpt``, ``system``)."""
    messages = []
    for index, (role, text) in enumerate(turns):
        if role not in ROLES:
            raise ValueError(f"{source}, turn {index}: unknown role {role!r}; use one of {', '.join(ROLES)}.")
        messages.append({"role": ROLES[role], "content": content_items(text)})
    return messages


def render(processor, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
    if not getattr(processor, "chat_template", None):
        raise ValueError(f"{type(processor).__name__} has no chat template; save one with the processor "
                         "(chat_template.jinja) so prompts can be rendered.")
    return processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)


def adds_special_tokens(tokenizer, texts: Sequence[str]) -> bool:
    """Whether tokenising ``texts`` should add the tokenizer's special tokens: not when the template already wrote
    the BOS token (as transformers' own ``apply_chat_template`` decides)."""
    bos = tokenizer.bos_token
    return not (bos and all(text.startswith(bos) for text in texts))


def process(processor, texts: list[str], images: list[list[Image.Image]], padding_side: str = "left") -> dict[str, Any]:
    """The processor's batch for rendered ``texts`` and each text's ``images``, padded on ``padding_side``."""
    with_images = any(images)
    try:
        batch = processor(
            text=texts, images=[list(i) for i in images] if with_images else None, return_tensors="pt", padding=True,
            padding_side=padding_side, add_special_tokens=adds_special_tokens(processor.tokenizer, texts),
        )
    except ValueError as err:  # e.g. PaliGemma's processor takes no prompt without an image
        raise ValueError(f"{type(processor).__name__} cannot encode this prompt: {err}") from err
    batch = dict(batch)
    batch.pop("labels", None)  # PaliGemma's processor labels every prompt token; training computes its own
    return batch


def accepts_text_only(processor) -> bool:
    """Whether the processor encodes a prompt without any image (PaliGemma's refuses one)."""
    try:
        process(processor, [render(processor, messages_of([("user", "hi")]), add_generation_prompt=True)], [[]])
    except ValueError:
        return False
    return True


def end_of_turn_id(processor) -> Optional[int]:
    """The special token the chat template writes right after an assistant message (``<|im_end|>``,
    ``<end_of_turn>``, ``</s>``, ...), or None when it writes no special token there."""
    marker = "MUNGREPLY"
    text = render(processor, messages_of([("user", "hi"), ("assistant", marker)]), add_generation_prompt=False)
    after = text[text.rindex(marker) + len(marker):]
    tokenizer = processor.tokenizer
    ids = tokenizer(after, add_special_tokens=False).input_ids if after else []
    if ids and ids[0] in set(tokenizer.all_special_ids):
        return ids[0]
    return None


def stop_ids(model, processor) -> list[int]:
    """Token ids that end a reply: the generation config's EOS, the tokenizer's, and the template's end of turn."""
    found: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured if isinstance(configured, list) else [configured]) + [
        processor.tokenizer.eos_token_id, end_of_turn_id(processor)
    ]:
        if isinstance(value, int) and value not in found:
            found.append(value)
    return found
