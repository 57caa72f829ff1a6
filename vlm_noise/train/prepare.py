"""The transformers VLM (+ MuNG) of a training run, prepared as its ``--tune`` asks (``prepare_model``): the model
loaded (quantised for ``--bits 4|8``), a new generator attached (or the one a MuNG folder records, continued), LoRA on
the language model's linears, which parameters train, and under ZeRO-3 the blank-image pass of text-only batches."""

from __future__ import annotations

import logging
import os
from typing import Optional

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, ProcessorMixin
from transformers.integrations import is_deepspeed_zero3_enabled

from mung.files import read_json
from mung.load_report import HeldLoadReport
from mung.loading import check_loading_info, quantization_config
from mung.training.adapters import LoraSettings, add_lora, prepare_quantized
from mung.training.flags import compute_dtype
from noise_generator import (GENERATOR_PREFIX, NoiseGeneratorConfig, attach, attach_from_config, find_noise_generator,
                             module_name_of)

from .. import support
from ..adapter import QUANTIZATION_SKIP
from .args import ModelArguments, TrainingArguments
from .blank_image import BlankImagePass

logger = logging.getLogger(__name__)


def check_served(path: str) -> None:
    """Refuse a folder the generic backbone cannot train, saying why, before any weights load."""
    reason = support.refusal(read_json(os.path.join(path, "config.json"), "a model folder with config.json"))
    if reason is not None:
        raise ValueError(f"--model_name_or_path {path} cannot carry a noise generator: {reason}.")


def generator_config(model_args: ModelArguments, ng_args, config) -> Optional[NoiseGeneratorConfig]:
    """The run's generator settings (width checked against the model's config, before any weights load), or None.
    A start folder that records a generator (a MuNG folder) is continued, with the same settings only."""
    recorded = getattr(config, "noise_generator", None)
    if not model_args.uses_generator:
        if recorded is not None:
            raise ValueError(f"--tune {model_args.tune} trains no noise generator, but {model_args.model_name_or_path} "
                             "carries one (config.json 'noise_generator'); start from the model without it, or "
                             "use --tune noise / noise_lora to continue it.")
        return None
    wanted = ng_args.to_config(config.get_text_config().hidden_size, base_model_type=config.model_type)
    if recorded is not None:
        had = NoiseGeneratorConfig.from_dict(dict(recorded), source=f"{model_args.model_name_or_path}/config.json")
        differ = sorted(k for k, v in wanted.to_dict().items() if had.to_dict().get(k) != v)
        if differ:
            raise ValueError(f"{model_args.model_name_or_path} carries a noise generator with other settings "
                             f"({', '.join(f'{k}={had.to_dict()[k]!r}' for k in differ)}); pass the same --ng_* "
                             "flags to continue it, or start from the model without it.")
    return wanted


def load_model(model_args: ModelArguments, training_args: TrainingArguments, config):
    """``from_pretrained`` of the start folder in the compute dtype (quantised for --bits 4/8), checked: no weight may
    be missing or of another shape (a MuNG folder's generator tensors are the generator's, restored by attach)."""
    dtype = compute_dtype(training_args)
    kwargs = {"dtype": dtype}
    quantization = quantization_config(model_args.bits, dtype, QUANTIZATION_SKIP)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": training_args.device})
    with HeldLoadReport((GENERATOR_PREFIX,)) as report:
        model, info = AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path, config=config,
                                                                  output_loading_info=True, **kwargs)
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(GENERATOR_PREFIX)]
    info = dict(info, unexpected_keys=unexpected)
    if check_loading_info(info, model_args.model_name_or_path):
        report.release()
        raise ValueError(f"{model_args.model_name_or_path} lacks weights of its model ({info['missing_keys'][:5]}); "
                         "pass a complete checkpoint folder.")
    report.discard()
    model.config.get_text_config().use_cache = False  # training keeps no KV cache (saved folders get it back)
    return model


def set_trainable(model, model_args: ModelArguments) -> None:
    """Everything frozen, then: ``--tune full`` trains all but the vision encoder (and that too with
    ``--tune_vision_tower``); the generator always trains. LoRA marks its own adapters trainable."""
    model.requires_grad_(False)
    if model_args.tune == "full":
        encoder, connectors = support.vision_encoder(model)
        if encoder is None and not model_args.tune_vision_tower:
            raise ValueError(f"--tune full: the vision encoder of this {type(model).__name__} is not known (looked for "
                             f"{', '.join(support.VISION_ENCODERS)}); pass --tune_vision_tower True to train it too.")
        model.requires_grad_(True)
        if encoder is not None and not model_args.tune_vision_tower:
            encoder.requires_grad_(False)
            for connector in connectors:
                connector.requires_grad_(True)
    train_generator(model)


def train_generator(model) -> None:
    """The generator trains (again after peft, which freezes every weight but its adapters)."""
    generator = find_noise_generator(model)
    if generator is not None:
        generator.requires_grad_(True)


def load_processor(path: str):
    processor = AutoProcessor.from_pretrained(path)
    if not isinstance(processor, ProcessorMixin):
        raise ValueError(f"{path} has no multimodal processor (AutoProcessor found only a {type(processor).__name__}); "
                         "save the model's processor into the folder.")
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return processor


def prepare_model(model_args: ModelArguments, training_args: TrainingArguments, ng_args):
    """(model, processor) of a training run, ready for the Trainer."""
    check_served(model_args.model_name_or_path)
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    support.warn_if_unverified(config.model_type)
    generator = generator_config(model_args, ng_args, config)
    processor = load_processor(model_args.model_name_or_path)
    model = load_model(model_args, training_args, config)
    if generator is not None and hasattr(model.config, "noise_generator"):
        if not attach_from_config(model, model_args.model_name_or_path)[1]:
            raise ValueError(f"{model_args.model_name_or_path}/config.json records a noise generator but the folder's "
                             "weights hold none of its tensors; start from the model without it.")
        logger.info("noise generator: continued from %s", model_args.model_name_or_path)
    elif generator is not None:
        attach(model, generator)
        logger.info("noise generator: new, initialised with %s", generator.init)
    if is_deepspeed_zero3_enabled():
        BlankImagePass(model, processor).install()
    if model_args.bits != 16:
        model = prepare_quantized(model, training_args.gradient_checkpointing)
    set_trainable(model, model_args)
    if model_args.uses_lora:
        settings = LoraSettings(r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout)
        decoder = module_name_of(model, model.get_decoder())
        model = add_lora(model, model_args.lora_target_regex(decoder), settings)
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()
        train_generator(model)
    return model, processor
