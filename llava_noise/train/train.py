"""Entry point of LLaVA-1.5 (+ MuNG) training: parse flags, build the model for the chosen mode, train, save.

Modes follow from the flags: ``--tune_mm_mlp_adapter`` (pretraining, projector only), full fine-tuning,
``--lora_enable`` (LoRA on the LLM's linears, projector trainable), ``--noise_generator True`` adds the generator
(trainable in every mode), ``--freeze_backbone True`` keeps the LLM frozen, ``--bits 4|8`` is QLoRA.
"""

from __future__ import annotations

import logging
import re
from typing import Optional

import torch
import transformers
from transformers import AutoTokenizer, BitsAndBytesConfig, set_seed

from mung.bad_samples import BadSampleCallback
from noise_generator import describe_trainable
from noise_generator.guards import check_deepspeed_lr_groups, check_generator_flags, check_model_path
from noise_generator.training import (
    NoiseGeneratorArguments,
    checkpoint_to_resume,
    close_process_group,
    compute_dtype,
    finished_or_cleared,
    prepare_cpu_deepspeed,
)

from ..constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_PATCH_TOKEN
from ..model import LlavaLlamaForCausalLM
from ..model.builder import load_llava_config
from .args import DataArguments, ModelArguments, TrainingArguments
from .data import make_supervised_data_module
from .trainer import LLaVATrainer

logger = logging.getLogger(__name__)


def resolve_attention(requested: str) -> str:
    """``flash_attention_2`` needs a GPU and the flash-attn package; otherwise PyTorch's SDPA is used."""
    if requested != "flash_attention_2":
        return requested
    import importlib.util

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


def build_model(model_args: ModelArguments, training_args: TrainingArguments) -> LlavaLlamaForCausalLM:
    dtype = compute_dtype(training_args)
    kwargs: dict = {"dtype": dtype, "cache_dir": training_args.cache_dir}
    if training_args.bits in (4, 8):
        skip = ["mm_projector", "noise_generator", "vision_tower", "lm_head"]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=training_args.bits == 4,
            load_in_8bit=training_args.bits == 8,
            llm_int8_skip_modules=skip,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=training_args.double_quant,
            bnb_4bit_quant_type=training_args.quant_type,
        )
        kwargs["device_map"] = {"": training_args.device}
    config = load_llava_config(model_args.model_name_or_path)
    model = LlavaLlamaForCausalLM.from_pretrained(model_args.model_name_or_path, config=config, **kwargs)
    model.config.use_cache = False
    return model


def train(attn_implementation: Optional[str] = None) -> None:
    parser = transformers.HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, NoiseGeneratorArguments))
    model_args, data_args, training_args, ng_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    if not model_args.vision_tower:
        raise ValueError("--vision_tower is required (a local CLIPVisionModel folder).")
    check_model_path(model_args.vision_tower, "--vision_tower")
    check_generator_flags(ng_args)  # before any weights load
    check_deepspeed_lr_groups(
        training_args.deepspeed, {"--ng_lr": ng_args.ng_lr, "--mm_projector_lr": training_args.mm_projector_lr}
    )
    finished = finished_or_cleared(training_args)
    if finished:
        if training_args.should_log:
            print(finished, flush=True)
        return
    prepare_cpu_deepspeed(training_args.deepspeed)
    set_seed(training_args.seed)  # the generator's and LoRA's initial weights

    model = build_model(model_args, training_args)
    if attn_implementation:
        model.set_attn_implementation(resolve_attention(attn_implementation))
    if model_args.freeze_backbone:
        model.requires_grad_(False)  # the whole LLM, lm_head included (MuNG-only runs train the generator alone)

    model.get_model().initialize_vision_modules(model_args)
    tower = model.get_vision_tower()
    tower.load_model(device=training_args.device, dtype=compute_dtype(training_args) if training_args.bits == 16 else torch.float32)
    if model_args.noise_generator:
        ng_config = ng_args.to_config(model.config.hidden_size)
        model.get_model().initialize_noise_generator(ng_config)
        model.get_model().noise_generator.to(device=training_args.device)

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        cache_dir=training_args.cache_dir,
        model_max_length=training_args.model_max_length,
        padding_side="right",
        use_fast=True,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token

    config = model.config
    config.version = model_args.version  # the conversation template: chat and eval pick it from config.json
    config.image_aspect_ratio = data_args.image_aspect_ratio
    config.tokenizer_padding_side = tokenizer.padding_side
    config.tokenizer_model_max_length = training_args.model_max_length
    config.tune_mm_mlp_adapter = training_args.tune_mm_mlp_adapter = model_args.tune_mm_mlp_adapter
    config.freeze_mm_mlp_adapter = training_args.freeze_mm_mlp_adapter
    config.mm_use_im_start_end = model_args.mm_use_im_start_end
    config.mm_use_im_patch_token = model_args.mm_use_im_patch_token
    config.mm_projector_lr = training_args.mm_projector_lr
    add_vision_tokens(model, tokenizer, model_args)

    if training_args.bits in (4, 8):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=training_args.gradient_checkpointing
        )
    if training_args.gradient_checkpointing:
        model.enable_input_require_grads()
    if training_args.lora_enable:
        from peft import LoraConfig, get_peft_model

        lora_config = LoraConfig(
            r=training_args.lora_r,
            lora_alpha=training_args.lora_alpha,
            target_modules=llm_lora_targets(model),
            lora_dropout=training_args.lora_dropout,
            bias=training_args.lora_bias,
            task_type="CAUSAL_LM",
            use_dora=training_args.lora_use_dora,
        )
        model = get_peft_model(model, lora_config)

    set_trainable(model, model_args, training_args)
    logger.info("LLaVA %s", describe_trainable(model))

    data_module = make_supervised_data_module(tokenizer, data_args, model_args, training_args, model, return_sample_ids=True)
    trainer = LLaVATrainer(model=model, processing_class=tokenizer, args=training_args, ng_lr=ng_args.ng_lr,
                           callbacks=[BadSampleCallback(data_module["train_dataset"].bad_samples)], **data_module)
    resume = checkpoint_to_resume(
        training_args.resume_from_checkpoint, training_args.output_dir, training_args.overwrite_output_dir
    )
    trainer.train(resume_from_checkpoint=resume)
    mismatches = data_module["train_dataset"].mismatches
    if mismatches:
        logger.warning("%d sample(s) had tokenisation mismatches and were not supervised.", mismatches)
    trainer.save_state()
    model.config.use_cache = True
    trainer.save_model(training_args.output_dir)


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


if __name__ == "__main__":
    train()
    close_process_group()
