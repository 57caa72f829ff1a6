"""Chat templates of the tiny VLM families, in the shape each real family's template has.

A template renders ``messages`` (``role`` + ``content``: a string or a list of ``{"type": "image"}`` and
``{"type": "text", "text": ...}`` items) into the text the family's processor expects: every image item becomes the
family's image marker, which the processor then expands into that image's placeholder tokens.
"""

from __future__ import annotations


def _items(image_marker: str, trim: bool = False) -> str:
    """Jinja for one message's content: text as is (trimmed for Gemma), each image item as ``image_marker``."""
    text = "item['text'] | trim" if trim else "item['text']"
    return (
        "{%- if message['content'] is string -%}{{- message['content']" + (" | trim" if trim else "") + " -}}"
        "{%- else -%}{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{- '" + image_marker + "' -}}"
        "{%- elif item['type'] == 'text' -%}{{- " + text + " -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
    )


def chatml(image_marker: str) -> str:
    """ChatML (InternVL, LLaVA-OneVision): ``<|im_start|>role\\n ... <|im_end|>\\n``."""
    return (
        "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        + _items(image_marker)
        + "{{- '<|im_end|>\\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


def vicuna() -> str:
    """LLaVA-1.5 / LLaVA-NeXT (Vicuna): ``USER: <image>\\nQ ASSISTANT: A</s>``."""
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}" + _items("") + "{{- ' ' -}}"
        "{%- else -%}{{- message['role'] | upper + ': ' -}}" + _items("<image>\\n")
        + "{%- if message['role'] == 'assistant' -%}{{- eos_token -}}{%- else -%}{{- ' ' -}}{%- endif -%}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
    )


def gemma(image_marker: str) -> str:
    """Gemma 3: ``<bos><start_of_turn>user\\n ... <end_of_turn>\\n<start_of_turn>model\\n``."""
    return (
        "{{- bos_token -}}{%- for message in messages -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{- '<start_of_turn>' + role + '\\n' -}}" + _items(image_marker, trim=True)
        + "{{- '<end_of_turn>\\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
    )


def paligemma() -> str:
    """PaliGemma has no chat format: every image first, then the question (the processor adds BOS after the images
    and the closing newline); an assistant message is the answer (the suffix) followed by EOS."""
    return (
        "{%- for message in messages if message['content'] is not string -%}"
        "{%- for item in message['content'] if item['type'] == 'image' -%}{{- '<image>' -}}{%- endfor -%}"
        "{%- endfor -%}{%- for message in messages -%}" + _items("")
        + "{%- if message['role'] == 'assistant' -%}{{- eos_token -}}{%- endif -%}{%- endfor -%}"
    )


def idefics() -> str:
    """Idefics3 / SmolVLM: ``<|im_start|>User:<image>Q<end_of_utterance>\\nAssistant: A<end_of_utterance>\\n``."""
    return (
        "{{- '<|im_start|>' -}}{%- for message in messages -%}{{- message['role'] | capitalize -}}"
        "{%- if message['content'] is not string and message['content'][0]['type'] == 'image' -%}{{- ':' -}}"
        "{%- else -%}{{- ': ' -}}{%- endif -%}" + _items("<image>")
        + "{{- '<end_of_utterance>\\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}"
    )


def mistral() -> str:
    """Mistral 3 (Pixtral): ``<s>[INST]Q[IMG][/INST]A</s>``."""
    return (
        "{{- bos_token -}}{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}{{- '[INST]' -}}" + _items("[IMG]") + "{{- '[/INST]' -}}"
        "{%- elif message['role'] == 'assistant' -%}" + _items("") + "{{- eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    )


def qwen() -> str:
    """Qwen2-VL / Qwen3-VL: the tiny world's Qwen template (a system turn, ``<|vision_start|><|image_pad|>...``)."""
    from .tokenization import qwen_chat_template  # transformers: here, so `tiny_world --help` imports none

    return qwen_chat_template()
