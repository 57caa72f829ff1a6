"""Conversation templates of LLaVA-1.5, kept as data and rendered by one method.

A template is a ``Conversation``: system text, the two role names, how turns are separated (``sep_style``, ``sep``,
``sep2``) and the messages so far. ``get_prompt()`` renders it exactly as the original LLaVA does; ``render_pieces()``
is the single rendering routine under it and also tells which characters belong to the assistant (the training
labels come from that, so training and inference share one rendering path). Templates in ``conv_templates`` are
never modified: call ``.copy()``.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, auto
from typing import Any, NamedTuple, Optional

from .constants import DEFAULT_IMAGE_TOKEN

# How the *_mmtag templates show an image: a scripted exchange in front of the first message.
MMTAG_IMAGE = "<Image>" + DEFAULT_IMAGE_TOKEN + "</Image>"
MMTAG_RECEIVED = "Received."


class SeparatorStyle(Enum):
    """How turns are joined (names as in the original LLaVA)."""

    SINGLE = auto()  # "{system}{sep}{role}: {msg}{sep}..."
    TWO = auto()  # "{system}{sep}{role}: {msg}{sep or sep2}..." (vicuna v1: sep2 ends an assistant turn)
    MPT = auto()  # "{system}{sep}{role}{msg}{sep}..." (ChatML style, roles carry their own markers)
    PLAIN = auto()  # pretraining: "{image}{caption}{sep}"; an unanswered message is followed by sep
    LLAMA_2 = auto()  # "[INST] <<SYS>>...<</SYS>>\n\n{msg} [/INST] {answer} {sep2}{sep}[INST] ..."


class _Shown(NamedTuple):
    """A message as the prompt shows it: its text (None: an open turn) and whether it is a reply to supervise."""

    role: str
    text: Optional[str]
    is_reply: bool


@dataclasses.dataclass
class Conversation:
    system: str
    roles: tuple[str, str]
    messages: list[list[Any]]
    # The first ``offset`` messages are the template's worked example (v0): shown to the model, never supervised.
    offset: int = 0
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: Optional[str] = None
    version: str = "Unknown"
    # Images are shown as "<Image><image></Image>" (the *_mmtag templates), in prompts and in training data.
    mmtag: bool = False

    # --- rendering -------------------------------------------------------------------------------------------
    def _shown_messages(self) -> list[_Shown]:
        """The messages as the prompt shows them.

        A message is text or, as the web UI stores it, a tuple (text, image, image_process_mode). As in the original,
        an empty text is an open turn, and a first message in tuple form gets its image in front (``<image>\\n`` +
        its text without ``<image>``), or, in mmtag templates, a scripted exchange showing the image before it.
        """
        shown = []
        for i, (role, message) in enumerate(self.messages):
            text = message[0] if isinstance(message, (tuple, list)) else (message or None)
            shown.append(_Shown(role, text, i % 2 == 1 and i >= self.offset))
        if shown and isinstance(self.messages[0][1], (tuple, list)):
            first = shown[0].text.replace(DEFAULT_IMAGE_TOKEN, "").strip()
            if self.mmtag:
                shown[0] = shown[0]._replace(text=first or None)
                shown[:0] = [_Shown(self.roles[0], MMTAG_IMAGE, False), _Shown(self.roles[1], MMTAG_RECEIVED, False)]
            else:
                shown[0] = shown[0]._replace(text=DEFAULT_IMAGE_TOKEN + "\n" + first)
        return shown

    def render_pieces(self) -> list[tuple[str, bool]]:
        """The prompt as consecutive (text, is_reply) pieces; their concatenation is ``get_prompt()``.

        A reply piece is exactly what training supervises: the reply, the text that ends it (e.g. ``</s>``) and, in
        the "ROLE: reply" styles, the space in front of it. An open last message (``None``) renders as the
        generation prompt. The template's example turns (``offset``) are never reply pieces.
        """
        render = {
            SeparatorStyle.SINGLE: self._role_colon_pieces,
            SeparatorStyle.TWO: self._role_colon_pieces,
            SeparatorStyle.MPT: self._mpt_pieces,
            SeparatorStyle.PLAIN: self._plain_pieces,
            SeparatorStyle.LLAMA_2: self._llama_2_pieces,
        }[self.sep_style]
        return [(text, is_reply) for text, is_reply in render(self._shown_messages()) if text]

    def _role_colon_pieces(self, shown: list[_Shown]) -> list[tuple[str, bool]]:
        pieces = [(self.system + self.sep, False)]
        for i, message in enumerate(shown):
            pieces.append((message.role + ":", False))
            if message.text is None:
                continue
            end = self.sep2 if self.sep_style == SeparatorStyle.TWO and i % 2 == 1 else self.sep
            # The space after "ROLE:" belongs to the reply: LLaVA's labels start right after the colon, so a lone
            # space token (a reply starting with a digit) is supervised.
            pieces.append((" " + message.text + end, message.is_reply))
        return pieces

    def _mpt_pieces(self, shown: list[_Shown]) -> list[tuple[str, bool]]:
        pieces = [(self.system + self.sep, False)]
        for message in shown:
            pieces.append((message.role, False))
            if message.text is not None:
                pieces.append((message.text + self.sep, message.is_reply))
        return pieces

    def _plain_pieces(self, shown: list[_Shown]) -> list[tuple[str, bool]]:
        pieces = [(self.system, False)]
        for i, message in enumerate(shown):
            if message.text is None:
                continue
            if i % 2 == 1:
                pieces.append((message.text + self.sep, message.is_reply))
                continue
            # As LLaVA pretrains, the image leads straight into its caption, and the caption ends with sep; a
            # message nobody has answered yet (an inference prompt) ends with sep instead.
            answered = i + 1 < len(shown) and shown[i + 1].text is not None
            pieces.append((message.text if answered else message.text + self.sep, False))
        return pieces

    def _llama_2_pieces(self, shown: list[_Shown]) -> list[tuple[str, bool]]:
        pieces = []
        for i, message in enumerate(shown):
            if i == 0 and (message.text is None or message.role != self.roles[0]):
                raise ValueError("A llama_2 conversation must start with a non-empty user message.")
            if message.text is None:
                continue
            if i % 2 == 1:
                pieces.append((" " + message.text + " " + self.sep2, message.is_reply))
                continue
            text = message.text
            if i == 0 and self.system:
                text = f"<<SYS>>\n{self.system}\n<</SYS>>\n\n" + text
            # The first turn's leading sep (BOS) is added by the tokenizer, later ones are literal.
            pieces.append(((self.sep if i else "") + f"[INST] {text} [/INST]", False))
        return pieces

    def get_prompt(self) -> str:
        return "".join(text for text, _ in self.render_pieces())

    # --- editing ---------------------------------------------------------------------------------------------
    def append_message(self, role: str, message: Any) -> None:
        self.messages.append([role, message])

    def copy(self) -> "Conversation":
        return dataclasses.replace(self, messages=[[role, message] for role, message in self.messages])


_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
_MMTAG_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant is able to understand the visual content that the user provides, and assist the user with a "
    "variety of tasks using natural language."  # no space before the next sentence, as in the original
    "The visual content will be provided with the following format: <Image>visual content</Image>."
)
_LLAMA_2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)
# The v0 template opens with one worked exchange (offset=2).
_V0_EXAMPLE = [
    ["Human", "What are the key differences between renewable and non-renewable energy sources?"],
    [
        "Assistant",
        "Renewable energy sources are those that can be replenished naturally in a relatively short amount of time, "
        "such as solar, wind, hydro, geothermal, and biomass. Non-renewable energy sources, on the other hand, are "
        "finite and will eventually be depleted, such as coal, oil, and natural gas. Here are some key differences "
        "between renewable and non-renewable energy sources:\n"
        "1. Availability: Renewable energy sources are virtually inexhaustible, while non-renewable energy sources "
        "are finite and will eventually run out.\n"
        "2. Environmental impact: Renewable energy sources have a much lower environmental impact than non-renewable "
        "sources, which can lead to air and water pollution, greenhouse gas emissions, and other negative effects.\n"
        "3. Cost: Renewable energy sources can be more expensive to initially set up, but they typically have lower "
        "operational costs than non-renewable sources.\n"
        "4. Reliability: Renewable energy sources are often more reliable and can be used in more remote locations "
        "than non-renewable sources.\n"
        "5. Flexibility: Renewable energy sources are often more flexible and can be adapted to different situations "
        "and needs, while non-renewable sources are more rigid and inflexible.\n"
        "6. Sustainability: Renewable energy sources are more sustainable over the long term, while non-renewable "
        "sources are not, and their depletion can lead to economic and social instability.\n",
    ],
]

conv_vicuna_v0 = Conversation(
    system=_LLAVA_SYSTEM,
    roles=("Human", "Assistant"),
    messages=_V0_EXAMPLE,
    offset=2,
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
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
    system=_LLAMA_2_SYSTEM,
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
    system="", roles=("", ""), messages=[], version="plain", sep_style=SeparatorStyle.PLAIN, sep="\n"
)
conv_llava_v0 = Conversation(
    system=_LLAVA_SYSTEM, roles=("Human", "Assistant"), messages=[], sep_style=SeparatorStyle.SINGLE, sep="###"
)
conv_llava_v0_mmtag = Conversation(
    system=_MMTAG_SYSTEM,
    roles=("Human", "Assistant"),
    messages=[],
    version="v0_mmtag",
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
    mmtag=True,
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
conv_llava_v1_mmtag = Conversation(
    system=_MMTAG_SYSTEM,
    roles=("USER", "ASSISTANT"),
    messages=[],
    version="v1_mmtag",
    sep_style=SeparatorStyle.TWO,
    sep=" ",
    sep2="</s>",
    mmtag=True,
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
    "v0_mmtag": conv_llava_v0_mmtag,
    "llava_v1": conv_llava_v1,
    "v1_mmtag": conv_llava_v1_mmtag,
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
