"""Random tiny models saved with ``save_pretrained``, so they load through the same code paths as real ones.

- LLaVA-1.5 parts: a Vicuna-like ``LlamaForCausalLM`` (+ its tokenizer, saved beside it) and a CLIP vision tower
  (``CLIPVisionModel`` + ``CLIPImageProcessor``), the two folders LLaVA's model_name_or_path / vision_tower name.
- Qwen2.5-VL: ``Qwen2_5_VLForConditionalGeneration`` + a ``Qwen2_5_VLProcessor`` in one folder.

Each model is created right after ``torch.manual_seed``, so a seed fixes every weight.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .presets import IMAGE_SIZE, Preset

PATCH_SIZE = 14
# Qwen pixel bounds: at most one 112 x 112 image worth of pixels (grid [1, 8, 8] -> 16 LLM tokens after the 2 x 2
# merge), at least 56 x 56 (4 tokens), so larger user images are scaled down instead of flooding the tiny LLM.
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = IMAGE_SIZE * IMAGE_SIZE

# Distinct seed offsets, so the three models never share an initialisation stream.
_LLM, _CLIP, _QWEN = 0, 1, 2


def _seed(seed: int, offset: int) -> None:
    torch.manual_seed(seed * 16 + offset)


def save_llava_llm(out_dir: str, preset: Preset, vocab_size: int, seed: int) -> None:
    config = LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,  # like Llama/Vicuna: LLaVA pads with unk itself
        tie_word_embeddings=False,
        **preset.llama,
    )
    _seed(seed, _LLM)
    LlamaForCausalLM(config).save_pretrained(out_dir)


# Builder version 5: the tower's position embeddings scaled from CLIP's initial std (0.02) to about a patch
# feature's (0.5). At 0.02 they are ~1/25 of what a patch shows, so after the pre-layer norm the frozen random tower
# barely says *where* a shape is and no amount of stage-1 training taught LLaVA left from right (docs/results.md).
POSITION_EMBEDDING_SCALE = 25.0


def save_clip_tower(out_dir: str, preset: Preset, seed: int, placed: bool = True) -> None:
    """``placed``: position embeddings at POSITION_EMBEDDING_SCALE (builder version 5); False: as initialised."""
    size = preset.clip["image_size"]
    config = CLIPVisionConfig(patch_size=PATCH_SIZE, projection_dim=preset.clip["hidden_size"], **preset.clip)
    _seed(seed, _CLIP)
    tower = CLIPVisionModel(config)
    if placed:
        with torch.no_grad():
            getattr(tower, "vision_model", tower).embeddings.position_embedding.weight.mul_(POSITION_EMBEDDING_SCALE)
    tower.save_pretrained(out_dir)
    processor = CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    processor.save_pretrained(out_dir)


def save_qwen(out_dir: str, preset: Preset, tokenizer: Qwen2Tokenizer, seed: int) -> None:
    ids = tokenizer.convert_tokens_to_ids
    text = dict(preset.qwen_text)
    mrope_section = text.pop("mrope_section")
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=4096,
            rope_scaling={"type": "mrope", "mrope_section": mrope_section},
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
            **text,
        ),
        vision_config=dict(
            out_hidden_size=preset.qwen_text["hidden_size"],
            patch_size=PATCH_SIZE,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=IMAGE_SIZE,
            fullatt_block_indexes=[preset.qwen_vision["depth"] - 1],
            **preset.qwen_vision,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    _seed(seed, _QWEN)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out_dir)
    pixels = {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS}
    patching = dict(patch_size=PATCH_SIZE, merge_size=2, temporal_patch_size=2)
    # Qwen2_5_VLProcessor refuses to be built without a video processor, even for image-only use.
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels, **patching),
        video_processor=Qwen2VLVideoProcessor(size=pixels, **patching),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(out_dir)
