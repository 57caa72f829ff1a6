"""The Qwen2.5-VL (+ MuNG) model of a training run, prepared as its ``--tune`` asks (``prepare_model``): the base
loaded (quantised for ``--bits 4|8``) with a fresh or restored generator, LoRA / DoRA on the language model's
linears, and which parameters train. The training entry point and the benchmarks build their models here."""

from __future__ import annotations

from transformers import AutoProcessor

from mung.training.adapters import LoraSettings, add_lora, prepare_quantized
from mung.training.flags import compute_dtype
from noise_generator import find_noise_generator

from ..model.builder import load_model, noise_config
from .args import ModelArguments, TrainingArguments

BASE_MODEL_TYPE = "qwen2_5_vl"


def load_base(model_args: ModelArguments, training_args: TrainingArguments, ng_args):
    """The base of ``--model_name_or_path`` with the generator of the ``--ng_*`` flags (width checked before any
    weights load), frozen, without KV cache."""
    generator_config = None
    if model_args.uses_generator:
        hidden_size = noise_config(model_args.model_name_or_path).text_config.hidden_size
        generator_config = ng_args.to_config(hidden_size, base_model_type=BASE_MODEL_TYPE)
    device_map = None
    if model_args.bits != 16:
        device_map = {"": training_args.device.index if training_args.device.type == "cuda" else "cpu"}
    model = load_model(
        model_args.model_name_or_path,
        generator=generator_config,
        generator_may_be_missing=True,
        announce_new_generator=True,
        dtype=compute_dtype(training_args),
        device_map=device_map,
        bits=model_args.bits,
    )
    model.config.use_cache = False
    model.requires_grad_(False)
    return model


def prepare_model(model_args: ModelArguments, training_args: TrainingArguments, ng_args):
    """(model, processor) of a training run, ready for the Trainer."""
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    model = load_base(model_args, training_args, ng_args)
    if model_args.bits != 16:
        model = prepare_quantized(model, training_args.gradient_checkpointing)
    if model_args.tune == "full":
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        model.model.visual.merger.requires_grad_(True)
        if model_args.tune_vision_tower:
            model.model.visual.requires_grad_(True)
    if model_args.uses_lora:
        settings = LoraSettings(r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout,
                                use_dora=model_args.tune == "dora")
        model = add_lora(model, model_args.lora_target_regex(), settings)
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()
    generator = find_noise_generator(model)
    if generator is not None:
        generator.requires_grad_(True)
    return model, processor
