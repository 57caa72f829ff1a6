"""Conversation templates of LLaVA-1.5, kept as data and rendered by one method.

A template is a ``Conversation``: system text, the two role names, how turns are separated (``sep_style``, ``sep``,
``sep2``) and the messages so far. ``get_prompt()`` renders it; ``render_pieces()`` is the single rendering routine
under it and also tells which characters belong to the assistant (the training labels come from that, so training
and inference share one rendering path). Templates in ``conv_templates`` are never modified: call ``.copy()``.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, auto
from typing import Any, Optional

from .constants import DEFAULT_IMAGE_TOKEN


class SeparatorStyle(Enum):
    """How turns are joined (names as in the original LLaVA)."""

    SINGLE = auto()  # "{system}{sep}{role}: {msg}{sep}..."
    TWO = auto()  # "{system}{sep}{role}: {msg}{sep or sep2}..." (vicuna v1: sep2 ends an assistant turn)
    MPT = auto()  # "{system}{sep}{role}{msg}{sep}..." (ChatML style, roles carry their own markers)
    PLAIN = auto()  # "{msg}{sep or sep2}..." (pretraining: image then caption)
    LLAMA_2 = auto()  # "[INST] <<SYS>>...<</SYS>>\n\n{msg} [/INST] {answer} {sep2}{sep}[INST] ..."


@dataclasses.dataclass
class Conversation:
    system: str
    roles: tuple[str, str]
    messages: list[list[Any]]
    offset: int = 0
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: Optional[str] = None
    version: str = "Unknown"
    skip_next: bool = False

    # --- rendering -------------------------------------------------------------------------------------------
    @staticmethod
    def _text(message: Any) -> str:
        """A message is text, or (text, image, image_process_mode) as the web UI stores it."""
        if isinstance(message, (tuple, list)):
            return message[0]
        return message

    def render_pieces(self) -> list[tuple[str, bool]]:
        """The prompt as consecutive (text, is_assistant) pieces; their concatenation is ``get_prompt()``.

        An assistant piece is the reply plus the text that ends the reply (e.g. ``</s>``): exactly what training
        supervises. An empty last message (``None``) renders the role prefix only, as a generation prompt.
        """
        pieces: list[tuple[str, bool]] = []
        style = self.sep_style
        for i, (role, message) in enumerate(self.messages):
            text = self._text(message) if message is not None else None
            is_assistant = i % 2 == 1
            if style == SeparatorStyle.LLAMA_2:
                pieces.extend(self._llama_2_piece(i, role, text))
                continue
            if i == 0:
                lead = {
                    SeparatorStyle.SINGLE: self.system + self.sep,
                    SeparatorStyle.TWO: self.system + self.sep,
                    SeparatorStyle.MPT: self.system + self.sep,
                    SeparatorStyle.PLAIN: self.system,
                }[style]
                if lead:
                    pieces.append((lead, False))
            end = self.sep2 if (is_assistant and style in (SeparatorStyle.TWO, SeparatorStyle.PLAIN)) else self.sep
            if style == SeparatorStyle.PLAIN:
                prefix = ""
            elif style == SeparatorStyle.MPT:
                prefix = role
            else:
                prefix = role + ":" + (" " if text is not None else "")
            if prefix:
                pieces.append((prefix, False))
            if text is not None:
                pieces.append((text + end, is_assistant))
        return pieces

    def _llama_2_piece(self, i: int, role: str, text: Optional[str]) -> list[tuple[str, bool]]:
        if i == 0 and (not text or role != self.roles[0]):
            raise ValueError("A llama_2 conversation must start with a non-empty user message.")
        if text is None:
            return []
        if i % 2 == 0:
            if i == 0 and self.system:
                text = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n" + text
            # The first turn's leading sep (BOS) is added by the tokenizer, later ones are literal.
            return [((self.sep if i else "") + f"[INST] {text} [/INST]", False)]
        return [(" ", False), (text + " " + self.sep2, True)]

    def get_prompt(self) -> str:
        return "".join(text for text, _ in self.render_pieces())

    # --- editing ---------------------------------------------------------------------------------------------
    def append_message(self, role: str, message: Any) -> None:
        self.messages.append([role, message])

    def copy(self) -> "Conversation":
        return dataclasses.replace(self, messages=[[role, message] for role, message in self.messages])

    def get_images(self) -> list[Any]:
        """Images attached to user messages as (text, image, mode) tuples, in order."""
        return [m[1] for i, (_, m) in enumerate(self.messages[self.offset :]) if i % 2 == 0 and isinstance(m, (tuple, list))]

    def to_gradio_chatbot(self) -> list[list[Optional[str]]]:
        rows: list[list[Optional[str]]] = []
        for i, (_, message) in enumerate(self.messages[self.offset :]):
            if i % 2 == 0:
                rows.append([self._text(message), None])
            else:
                rows[-1][-1] = message
        return rows

    def dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "roles": self.roles,
            "messages": [[role, self._text(m) if m is not None else None] for role, m in self.messages],
            "offset": self.offset,
            "sep": self.sep,
            "sep2": self.sep2,
        }


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

conv_vicuna_v0 = Conversation(
    system=_LLAVA_SYSTEM, roles=("Human", "Assistant"), messages=[], sep_style=SeparatorStyle.SINGLE, sep="###"
)
conv_vicuna_v1 = Conversation(
    system=_VICUNA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="v1",
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
)
conv_llama_2 = Conversation(
    system="You are a helpful, respectful and honest assistant.",
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="llama_v2",
    sep_style=SeparatorStyle.LLAMA_2,
    sep="<s>",
    sep2="</s>",
)
conv_llava_llama_2 = Conversation(
    system="You are a helpful language and vision assistant. You are able to understand the visual content that "
    "the user provides, and assist the user with a variety of tasks using natural language.",
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="llama_v2",
    sep_style=SeparatorStyle.LLAMA_2,
    sep="<s>",
    sep2="</s>",
)
conv_mistral_instruct = Conversation(
    system="",
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="llama_v2",
    sep_style=SeparatorStyle.LLAMA_2,
    sep="",
    sep2="</s>",
)
conv_chatml_direct = Conversation(
    system="<|im_start|>system\nAnswer the questions.",
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    messages=[],
    version="mpt",
    sep_style=SeparatorStyle.MPT,
    sep="<|im_end|>",
)
conv_mpt = Conversation(
    system="<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. "
    "The assistant gives helpful and honest answers.",
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    messages=[],
    version="mpt",
    sep_style=SeparatorStyle.MPT,
    sep="<|im_end|>",
)
# Pretraining: the image, then its caption and a newline (the caption and newline are supervised).
conv_llava_plain = Conversation(
    system="", roles=("", ""), messages=[], version="plain", sep_style=SeparatorStyle.PLAIN, sep="", sep2="\n"
)
conv_llava_v0 = Conversation(
    system=_LLAVA_SYSTEM, roles=("Human", "Assistant"), messages=[], sep_style=SeparatorStyle.SINGLE, sep="###"
)
conv_llava_v1 = Conversation(
    system=_LLAVA_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="v1",
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
)

default_conversation = conv_vicuna_v1
conv_templates: dict[str, Conversation] = {
    "default": conv_vicuna_v0,
    "v0": conv_vicuna_v0,
    "v1": conv_vicuna_v1,
    "vicuna_v1": conv_vicuna_v1,
    "llama_2": conv_llama_2,
    "mistral_instruct": conv_mistral_instruct,
    "chatml_direct": conv_chatml_direct,
    "mistral_direct": conv_chatml_direct,
    "plain": conv_llava_plain,
    "v0_plain": conv_llava_plain,
    "llava_v0": conv_llava_v0,
    "llava_v1": conv_llava_v1,
    "llava_llama_2": conv_llava_llama_2,
    "mpt": conv_mpt,
}


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of template ``name``, with a clear error for unknown names."""
    if name not in conv_templates:
        raise KeyError(f"Unknown conversation template {name!r}; known: {', '.join(sorted(conv_templates))}.")
    return conv_templates[name].copy()


__all__ = [
    "Conversation",
    "SeparatorStyle",
    "conv_templates",
    "default_conversation",
    "get_conv_template",
    "DEFAULT_IMAGE_TOKEN",
]
