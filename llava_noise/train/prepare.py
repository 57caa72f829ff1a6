"""The LLaVA-1.5 (+ MuNG) model of a training run, prepared as its flags ask (``prepare_model``).

Modes follow from the flags: ``--tune_mm_mlp_adapter`` (pretraining, projector only), full fine-tuning,
``--lora_enable`` (LoRA on the LLM's linears, projector trainable), ``--noise_generator True`` adds the generator
(trainable in every mode), ``--freeze_backbone True`` keeps the LLM frozen, ``--bits 4|8`` is QLoRA. The training
entry point and the benchmarks build their models here.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from typing import Optional

import torch
from transformers import AutoTokenizer

from mung.loading import quantization_config
from mung.training.adapters import LoraSettings, add_lora, prepare_quantized
from mung.training.flags import compute_dtype

from ..adapter import QUANTIZATION_SKIP
from ..constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_PATCH_TOKEN
from ..model import LlavaConfig, LlavaLlamaForCausalLM
from ..model.builder import load_llava_config
from .args import DataArguments, ModelArguments, TrainingArguments

logger = logging.getLogger(__name__)


def resolve_attention(requested: str) -> str:
    """``flash_attention_2`` needs a GPU and the flash-attn package; otherwise PyTorch's SDPA is used."""
    if requested != "flash_attention_2":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return requested
    logger.info("flash_attention_2 is not available here (no GPU or no flash-attn); using sdpa.")
    return "sdpa"


def llm_lora_targets(model: torch.nn.Module) -> str:
    """peft ``target_modules`` regex: every Linear leaf of the LLM's decoder layers (not the projector, vision
    tower, generator or lm_head)."""
    leaves = set()
    for name, module in model.named_modules():
        if re.match(r"model\.layers\.\d+\.", name) and isinstance(module, torch.nn.Linear):
            leaves.add(name.rsplit(".", 1)[-1])
    if not leaves:
        raise ValueError("No Linear layers found under model.layers.*; cannot place LoRA on the LLM.")
    return r"model\.layers\.\d+\.(?:\w+\.)*(?:" + "|".join(sorted(leaves)) + ")"


def build_model(model_args: ModelArguments, training_args: TrainingArguments, config: LlavaConfig) -> LlavaLlamaForCausalLM:
    """The LLM (or LLaVA checkpoint) of ``--model_name_or_path`` in the compute dtype, quantised for ``--bits 4|8``
    (never the projector, generator, vision tower or head)."""
    dtype = compute_dtype(training_args)
    kwargs: dict = {"dtype": dtype, "cache_dir": training_args.cache_dir}
    quantization = quantization_config(training_args.bits, dtype, QUANTIZATION_SKIP, training_args.double_quant,
                                       training_args.quant_type)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": training_args.device})
    model = LlavaLlamaForCausalLM.from_pretrained(model_args.model_name_or_path, config=config, **kwargs)
    model.config.use_cache = False
    return model


def load_tokenizer(model_args: ModelArguments, training_args: TrainingArguments):
    """The LLM's tokenizer, right-padded for training (pad = unk, else eos, when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=training_args.cache_dir,
        model_max_length=training_args.model_max_length,
        padding_side="right",
        use_fast=True,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return tokenizer


def record_training_settings(model, tokenizer, model_args: ModelArguments, data_args: DataArguments,
                             training_args: TrainingArguments) -> None:
    """What inference reads back from config.json: the template, image handling, tokens, projector mode."""
    config = model.config
    config.version = model_args.version  # the conversation template: chat and eval pick it from config.json
    config.image_aspect_ratio = data_args.image_aspect_ratio
    config.tokenizer_padding_side = tokenizer.padding_side
    config.tokenizer_model_max_length = training_args.model_max_length
    config.tune_mm_mlp_adapter = model_args.tune_mm_mlp_adapter
    config.freeze_mm_mlp_adapter = training_args.freeze_mm_mlp_adapter
    config.mm_use_im_start_end = model_args.mm_use_im_start_end
    config.mm_use_im_patch_token = model_args.mm_use_im_patch_token
    config.mm_projector_lr = training_args.mm_projector_lr


def add_vision_tokens(model: LlavaLlamaForCausalLM, tokenizer, model_args: ModelArguments) -> None:
    """``--mm_use_im_patch_token`` / ``--mm_use_im_start_end``: add the tokens; new rows start at the mean embedding."""
    new = []
    if model_args.mm_use_im_patch_token:
        new.append(DEFAULT_IMAGE_PATCH_TOKEN)
    if model_args.mm_use_im_start_end:
        new += [DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN]
    if not new:
        return
    added = tokenizer.add_tokens(new, special_tokens=True)
    if not added:
        return
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the new rows are set just below
    with torch.no_grad():
        for embedding in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            embedding[-added:] = embedding[:-added].mean(dim=0, keepdim=True)


def set_trainable(model, model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """Projector trainable unless frozen (and the only thing trained in pretraining); generator always trainable;
    vision tower never."""
    inner = model.get_model()
    if model_args.tune_mm_mlp_adapter:
        model.requires_grad_(False)
    inner.mm_projector.requires_grad_(not training_args.freeze_mm_mlp_adapter)
    if getattr(inner, "noise_generator", None) is not None:
        inner.noise_generator.requires_grad_(True)
    inner.get_vision_tower().requires_grad_(False)


def attach_vision_and_generator(model: LlavaLlamaForCausalLM, model_args: ModelArguments,
                                training_args: TrainingArguments, generator) -> None:
    """The vision tower (in the compute dtype; float32 beside a quantised LLM), the projector, and the generator."""
    model.get_model().initialize_vision_modules(model_args)
    tower_dtype = compute_dtype(training_args) if training_args.bits == 16 else torch.float32
    model.get_vision_tower().load_model(device=training_args.device, dtype=tower_dtype)
    if generator is not None:
        model.get_model().initialize_noise_generator(generator)
        model.get_model().noise_generator.to(device=training_args.device)


def prepare_model(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, ng_args,
                  attn_implementation: Optional[str] = None):
    """(model, tokenizer) of a training run, ready for the Trainer (``--lora_use_dora``: DoRA instead of LoRA)."""
    config = load_llava_config(model_args.model_name_or_path)
    # The generator's width is checked before any weights load.
    generator = ng_args.to_config(config.hidden_size) if model_args.noise_generator else None
    model = build_model(model_args, training_args, config)
    if attn_implementation:
        model.set_attn_implementation(resolve_attention(attn_implementation))
    if model_args.freeze_backbone:
        model.requires_grad_(False)  # the whole LLM, lm_head included (MuNG-only runs train the generator alone)
    attach_vision_and_generator(model, model_args, training_args, generator)
    tokenizer = load_tokenizer(model_args, training_args)
    record_training_settings(model, tokenizer, model_args, data_args, training_args)
    add_vision_tokens(model, tokenizer, model_args)
    if training_args.bits in (4, 8):
        model = prepare_quantized(model, training_args.gradient_checkpointing)
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()
    if training_args.lora_enable:
        settings = LoraSettings(r=training_args.lora_r, alpha=training_args.lora_alpha,
                                dropout=training_args.lora_dropout, bias=training_args.lora_bias,
                                use_dora=training_args.lora_use_dora)
        model = add_lora(model, llm_lora_targets(model), settings, task_type="CAUSAL_LM")
    set_trainable(model, model_args, training_args)
    return model, tokenizer
