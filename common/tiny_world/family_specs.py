"""What each tiny VLM family is made of: its special tokens, its processor and its model config.

Every family reuses the tiny world's byte-level BPE tokenizer (the Qwen one) with the family's own special tokens
added (named ones, such as Gemma 3's ``boi_token``, become tokenizer attributes the processors read), its chat
template (``family_templates``) and a processor built from transformers' own classes, so ``AutoProcessor`` and
``AutoModelForImageTextToText`` load the saved folder offline like a real checkpoint. Images are resized to
``IMAGE_SIDE`` pixels (56: a 4 x 4 grid of 14-pixel patches), so every family gets a handful of image tokens.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from . import family_templates as templates

# Each builder imports transformers itself: `python -m tiny_world --help` lists the family names and imports none.

IMAGE_SIDE = 56
PATCH = 14
# Pixel bounds of the Qwen families: a 112 x 112 image becomes a 64 x 64 (Qwen3-VL, patch 16) or 56 x 56 (Qwen2-VL,
# patch 14) grid of 2 x 2 merged patches: 4 image tokens.
QWEN_PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 64 * 64}


@dataclass(frozen=True)
class FamilySize:
    """Shapes of a family's language model (``text``) and vision tower (``vision``) in one preset."""

    text: dict[str, int]
    vision: dict[str, int]


SIZES = {
    "tiny": FamilySize(
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    ),
    "small": FamilySize(
        text=dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64),
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    ),
}


@dataclass(frozen=True)
class Family:
    """One family: ``name`` (its folder), transformers' ``model_type``, its special tokens (``named``: tokenizer
    attributes; ``extra``: other special tokens), BOS/EOS, and builders of its processor and model config."""

    name: str
    model_type: str
    template: Callable[[], str]
    processor: Callable[[Any, FamilySize], Any]
    config: Callable[[Any, FamilySize], Any]
    named: dict[str, str] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    bos: str | None = None
    eos: str = "<|im_end|>"
    end_of_turn: str | None = None  # the end-of-turn token when it is not EOS (generation stops at both)
    requires: tuple[str, ...] = ()  # Python modules transformers needs for this family's processor

    def missing_modules(self) -> list[str]:
        return [module for module in self.requires if importlib.util.find_spec(module) is None]


def text_config(tokenizer, size: FamilySize, **overrides) -> dict[str, Any]:
    """The language model's settings: the preset's shapes, the tokenizer's vocabulary and special ids."""
    ids = tokenizer.convert_tokens_to_ids
    config = dict(size.text, vocab_size=len(tokenizer), max_position_embeddings=4096,
                  eos_token_id=ids(tokenizer.eos_token), pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=ids(tokenizer.bos_token) if tokenizer.bos_token else None, tie_word_embeddings=False)
    config.update(overrides)
    return config


def vision_config(size: FamilySize, **overrides) -> dict[str, Any]:
    return dict(size.vision, image_size=IMAGE_SIDE, patch_size=PATCH, **overrides)


def square(side: int = IMAGE_SIDE) -> dict[str, int]:
    return {"height": side, "width": side}


# --- LLaVA family (CLIP / SigLIP tower + MLP projector) ------------------------------------------------------


def llava_processor(tokenizer, size):
    import transformers as tf
    image = tf.CLIPImageProcessor(size={"shortest_edge": IMAGE_SIDE}, crop_size=square())
    return tf.LlavaProcessor(image_processor=image, tokenizer=tokenizer, patch_size=PATCH, chat_template=templates.vicuna(),
                             vision_feature_select_strategy="default", num_additional_image_tokens=1)


def llava_config(tokenizer, size):
    import transformers as tf
    return tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(**vision_config(size, projection_dim=size.vision["hidden_size"])),
        text_config=tf.LlamaConfig(**text_config(tokenizer, size)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=(IMAGE_SIDE // PATCH) ** 2,
        vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )


PINPOINTS = [[56, 56], [56, 112], [112, 56]]


def llava_next_processor(tokenizer, size):
    import transformers as tf
    image = tf.LlavaNextImageProcessor(size={"shortest_edge": IMAGE_SIDE}, crop_size=square(),
                                       image_grid_pinpoints=PINPOINTS)
    return tf.LlavaNextProcessor(image_processor=image, tokenizer=tokenizer, patch_size=PATCH,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                 chat_template=templates.vicuna())


def llava_next_config(tokenizer, size):
    import transformers as tf
    return tf.LlavaNextConfig(
        vision_config=tf.CLIPVisionConfig(**vision_config(size, projection_dim=size.vision["hidden_size"])),
        text_config=tf.MistralConfig(**text_config(tokenizer, size, sliding_window=None)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=PINPOINTS,
        image_seq_length=(IMAGE_SIDE // PATCH) ** 2, vision_feature_layer=-2, tie_word_embeddings=False,
    )


def onevision_processor(tokenizer, size):
    import transformers as tf
    image = tf.LlavaOnevisionImageProcessor(size=square(), image_grid_pinpoints=PINPOINTS)
    video = tf.LlavaOnevisionVideoProcessor(size=square())
    return tf.LlavaOnevisionProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                      num_image_tokens=(IMAGE_SIDE // PATCH) ** 2, vision_feature_select_strategy="full",
                                      chat_template=templates.chatml("<image>\\n"))


def onevision_config(tokenizer, size):
    import transformers as tf
    ids = tokenizer.convert_tokens_to_ids
    return tf.LlavaOnevisionConfig(
        vision_config=tf.SiglipVisionConfig(**vision_config(size)),
        text_config=tf.Qwen2Config(**text_config(tokenizer, size)),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"), image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=-1, tie_word_embeddings=False,
    )


# --- Qwen-VL family (native resolution, 2 x 2 merged patches, 3-D rope) --------------------------------------


def qwen2_vl_processor(tokenizer, size):
    import transformers as tf
    patching = dict(patch_size=PATCH, merge_size=2, temporal_patch_size=2)
    return tf.Qwen2VLProcessor(image_processor=tf.Qwen2VLImageProcessor(size=QWEN_PIXELS, **patching),
                               video_processor=tf.Qwen2VLVideoProcessor(size=QWEN_PIXELS, **patching),
                               tokenizer=tokenizer, chat_template=templates.qwen())


def _qwen_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def mrope_section(size: FamilySize) -> list[int]:
    """Rotary frequencies of (time, height, width): a quarter for time, the rest split between height and width."""
    half = size.text["head_dim"] // 2
    rest = half - half // 4
    return [half // 4, rest // 2, rest - rest // 2]


def qwen2_vl_config(tokenizer, size):
    import transformers as tf
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(size)}
    text = text_config(tokenizer, size, rope_parameters=rope)
    text.pop("head_dim")  # Qwen2-VL derives it (hidden / heads)
    vision = dict(depth=size.vision["num_hidden_layers"], embed_dim=size.vision["hidden_size"],
                  hidden_size=size.text["hidden_size"], num_heads=size.vision["num_attention_heads"], mlp_ratio=2,
                  patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2)
    return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokenizer))


def qwen3_vl_processor(tokenizer, size):
    import transformers as tf
    patching = dict(patch_size=16, merge_size=2, temporal_patch_size=2)
    return tf.Qwen3VLProcessor(image_processor=tf.Qwen2VLImageProcessor(size=QWEN_PIXELS, **patching),
                               video_processor=tf.Qwen3VLVideoProcessor(size=QWEN_PIXELS, **patching),
                               tokenizer=tokenizer, chat_template=templates.qwen())


def qwen3_vl_config(tokenizer, size):
    import transformers as tf
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(size), "mrope_interleaved": True}
    text = text_config(tokenizer, size, rope_parameters=rope)
    vision = dict(depth=size.vision["num_hidden_layers"], hidden_size=size.vision["hidden_size"],
                  intermediate_size=size.vision["intermediate_size"], num_heads=size.vision["num_attention_heads"],
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=size.text["hidden_size"],
                  num_position_embeddings=16, deepstack_visual_indexes=[0, 1])
    return tf.Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokenizer))


# --- Gemma family (SigLIP tower; Gemma 3 pools to a fixed token count, PaliGemma is prefix-LM) ---------------


def gemma3_processor(tokenizer, size):
    import transformers as tf
    image = tf.Gemma3ImageProcessor(size=square())
    return tf.Gemma3Processor(image_processor=image, tokenizer=tokenizer, image_seq_length=4,
                              chat_template=templates.gemma("<start_of_image>"))


def gemma3_config(tokenizer, size):
    import transformers as tf
    ids = tokenizer.convert_tokens_to_ids
    text = text_config(tokenizer, size, sliding_window=16, query_pre_attn_scalar=size.text["head_dim"])
    return tf.Gemma3Config(
        text_config=tf.Gemma3TextConfig(**text), vision_config=tf.SiglipVisionConfig(**vision_config(size)),
        mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"), tie_word_embeddings=False,
    )


def paligemma_processor(tokenizer, size):
    import transformers as tf
    image = tf.SiglipImageProcessor(size=square())
    image.image_seq_length = (IMAGE_SIDE // PATCH) ** 2
    return tf.PaliGemmaProcessor(image_processor=image, tokenizer=tokenizer, chat_template=templates.paligemma())


def paligemma_config(tokenizer, size):
    import transformers as tf
    hidden = size.text["hidden_size"]
    return tf.PaliGemmaConfig(
        text_config=tf.GemmaConfig(**text_config(tokenizer, size)),
        vision_config=tf.SiglipVisionConfig(**vision_config(size, projection_dim=hidden)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vocab_size=len(tokenizer),
        projection_dim=hidden, hidden_size=hidden, tie_word_embeddings=False,
    )


# --- Idefics3 / SmolVLM (SigLIP tower, pixel shuffle, <fake_token_around_image> framing) ----------------------


def idefics3_processor(tokenizer, size):
    import transformers as tf
    image = tf.Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": IMAGE_SIDE},
                                      max_image_size={"longest_edge": IMAGE_SIDE})
    return tf.Idefics3Processor(image_processor=image, tokenizer=tokenizer, image_seq_len=4,
                                chat_template=templates.idefics())


def idefics3_config(tokenizer, size):
    import transformers as tf
    return tf.Idefics3Config(
        vision_config=tf.Idefics3VisionConfig(**vision_config(size)),
        text_config=tf.LlamaConfig(**text_config(tokenizer, size)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2, tie_word_embeddings=False,
    )


def smolvlm_processor(tokenizer, size):
    import transformers as tf
    image = tf.SmolVLMImageProcessor(do_image_splitting=False, size={"longest_edge": IMAGE_SIDE},
                                     max_image_size={"longest_edge": IMAGE_SIDE})
    video = tf.SmolVLMVideoProcessor(size={"longest_edge": IMAGE_SIDE}, max_image_size={"longest_edge": IMAGE_SIDE})
    return tf.SmolVLMProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video, image_seq_len=4,
                               chat_template=templates.idefics())


def smolvlm_config(tokenizer, size):
    import transformers as tf
    return tf.SmolVLMConfig(
        vision_config=tf.SmolVLMVisionConfig(**vision_config(size)),
        text_config=tf.LlamaConfig(**text_config(tokenizer, size)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2, tie_word_embeddings=False,
    )


# --- InternVL and Mistral 3 ------------------------------------------------------------------------------------


def internvl_processor(tokenizer, size):
    import transformers as tf
    image = tf.GotOcr2ImageProcessor(size=square(), crop_to_patches=False)
    video = tf.InternVLVideoProcessor(size=square())
    return tf.InternVLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video, image_seq_length=4,
                                chat_template=templates.chatml("<IMG_CONTEXT>\\n"))


def internvl_config(tokenizer, size):
    import transformers as tf
    vision = dict(size.vision, image_size=[IMAGE_SIDE, IMAGE_SIDE], patch_size=[PATCH, PATCH])
    return tf.InternVLConfig(
        vision_config=tf.InternVLVisionConfig(**vision), text_config=tf.Qwen2Config(**text_config(tokenizer, size)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def mistral3_processor(tokenizer, size):
    import transformers as tf
    image = tf.PixtralImageProcessor(size={"longest_edge": IMAGE_SIDE}, patch_size={"height": PATCH, "width": PATCH})
    return tf.PixtralProcessor(image_processor=image, tokenizer=tokenizer, patch_size=PATCH, spatial_merge_size=2,
                               image_token="[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]",
                               chat_template=templates.mistral())


def mistral3_config(tokenizer, size):
    import transformers as tf
    vision = vision_config(size, head_dim=size.vision["hidden_size"] // size.vision["num_attention_heads"])
    return tf.Mistral3Config(
        vision_config=tf.PixtralVisionConfig(**vision),
        text_config=tf.MistralConfig(**text_config(tokenizer, size, sliding_window=None)),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), spatial_merge_size=2, vision_feature_layer=-1,
        tie_word_embeddings=False,
    )


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("llava", "llava", templates.vicuna, llava_processor, llava_config,
               named={"image_token": "<image>"}, bos="<s>", eos="</s>"),
        Family("llava_next", "llava_next", templates.vicuna, llava_next_processor, llava_next_config,
               named={"image_token": "<image>"}, bos="<s>", eos="</s>"),
        Family("llava_onevision", "llava_onevision", lambda: templates.chatml("<image>\\n"), onevision_processor,
               onevision_config, named={"image_token": "<image>", "video_token": "<video>"}),
        Family("qwen2_vl", "qwen2_vl", templates.qwen, qwen2_vl_processor, qwen2_vl_config),
        Family("qwen3_vl", "qwen3_vl", templates.qwen, qwen3_vl_processor, qwen3_vl_config),
        Family("gemma3", "gemma3", lambda: templates.gemma("<start_of_image>"), gemma3_processor, gemma3_config,
               named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
               extra=("<start_of_turn>", "<end_of_turn>"), bos="<bos>", eos="<eos>", end_of_turn="<end_of_turn>"),
        Family("paligemma", "paligemma", templates.paligemma, paligemma_processor, paligemma_config,
               named={"image_token": "<image>"}, bos="<bos>", eos="<eos>"),
        Family("idefics3", "idefics3", templates.idefics, idefics3_processor, idefics3_config,
               extra=("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"),
               bos="<|begin_of_text|>", eos="<end_of_utterance>"),
        Family("smolvlm", "smolvlm", templates.idefics, smolvlm_processor, smolvlm_config,
               named={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                      "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
               bos="<|begin_of_text|>", eos="<end_of_utterance>", requires=("num2words",)),
        Family("internvl", "internvl", lambda: templates.chatml("<IMG_CONTEXT>\\n"), internvl_processor,
               internvl_config, named={"start_image_token": "<img>", "end_image_token": "</img>",
                                       "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}),
        Family("mistral3", "mistral3", templates.mistral, mistral3_processor, mistral3_config,
               extra=("[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"), bos="<s>", eos="</s>"),
    )
}
