"""Training the two tiny tokenizers offline.

LLaVA: a sentencepiece BPE model (byte fallback; unk 0, bos 1, eos 2, no pad, as in Llama/Vicuna) saved as
``tokenizer.model`` and through ``transformers.LlamaTokenizer`` (``tokenizer.json``), so
``AutoTokenizer.from_pretrained`` gives exactly the raw sentencepiece ids. In transformers 5.23 that tokenizer
adds NO BOS token (``tok("x").input_ids`` has no 1 in front); LLaVA's preprocessing must add BOS itself.
One known divergence, from transformers' converter: for text that starts with a space, sentencepiece still adds
its dummy prefix (" two" -> "▁", "▁two") while transformers does not (" two" -> "▁two").

Qwen2.5-VL: a byte-level BPE trained with the ``tokenizers`` library, with all of Qwen2.5-VL's special tokens
(ids 0..13, <|endoftext|> = 0), wrapped as ``Qwen2Tokenizer`` with a Qwen2-VL-style chat template.

Both tokenizers keep every answer word a single token (checked here, so a corpus change cannot break it quietly).
"""

from __future__ import annotations

import io
import os
from importlib import resources

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, LlamaTokenizer, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from .vocabulary import ANSWER_WORDS

LLAVA_MODEL_MAX_LENGTH = 2048
QWEN_MODEL_MAX_LENGTH = 32768
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# A line of every kind of text the LLaVA pipeline feeds the tokenizer, to check HF against raw sentencepiece.
PARITY_SAMPLE = (
    "USER: <image>\nWhat color is the circle?\nAnswer the question using a single word or phrase. "
    "ASSISTANT: red  Two\n\n  héllo 123 ☃"
)


def qwen_chat_template() -> str:
    return resources.files(__package__).joinpath("qwen_chat_template.jinja").read_text(encoding="utf-8")


def train_llava_tokenizer(lines: list[str], out_dir: str, vocab_size: int) -> LlamaTokenizer:
    """Trains sentencepiece, writes tokenizer.model + the transformers files into out_dir, returns the reload."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        # Llama's settings: no normalisation, whitespace kept as is (transformers' converter assumes them).
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        num_threads=1,  # one thread keeps training deterministic
        minloglevel=2,
    )
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "tokenizer.model")
    with open(model_path, "wb") as f:
        f.write(buffer.getvalue())
    # Loading a folder that holds only tokenizer.model makes transformers convert it; save_pretrained then
    # writes tokenizer.json beside it. A LlamaTokenizer(vocab_file=...) instance would NOT convert.
    converted = LlamaTokenizer.from_pretrained(
        out_dir, model_max_length=LLAVA_MODEL_MAX_LENGTH, padding_side="right"
    )
    converted.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    raw = spm.SentencePieceProcessor(model_file=model_path)
    if tokenizer(PARITY_SAMPLE).input_ids != raw.encode(PARITY_SAMPLE):
        raise RuntimeError("the transformers LLaVA tokenizer does not reproduce raw sentencepiece ids")
    _require_single_tokens(tokenizer, ANSWER_WORDS, "LLaVA")
    return tokenizer


def train_qwen_tokenizer(lines: list[str], vocab_size: int) -> Qwen2Tokenizer:
    backend = Tokenizer(models.BPE())
    # Qwen2's own normaliser and pre-tokeniser, so text splits the way the real tokenizer splits it.
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(lines, trainer)
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=QWEN_MODEL_MAX_LENGTH,
    )
    tokenizer.chat_template = qwen_chat_template()
    _require_single_tokens(tokenizer, ANSWER_WORDS, "Qwen")
    return tokenizer


def _require_single_tokens(tokenizer, words, name: str) -> None:
    split = [w for w in words if len(tokenizer(w, add_special_tokens=False).input_ids) != 1]
    if split:
        raise RuntimeError(f"{name} tokenizer splits answer words {split}; raise the vocab size or their frequency")
