"""The models the training-step and inference benchmarks compare, built through the backbones' own code paths.

- LLaVA-1.5: the flags of the ``scripts/v1_5`` recipes parsed by ``llava_noise.train``'s own dataclasses, then the
  model assembled in the order ``llava_noise.train.train.train()`` uses (``build_model``, vision modules, generator,
  ``llm_lora_targets`` + peft, ``set_trainable``). That order lives inside ``train()`` (no function returns the
  prepared model), so ``build_llava`` repeats the calls, not their logic.
- Qwen2.5-VL: ``qwen_noise.train.train.build_model`` with the ``--tune`` of each recipe.

Every contender starts from the same tiny-world checkpoint and the same seed, so the frozen weights are identical.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import torch
import transformers

import tiny_world
from noise_generator.training import NoiseGeneratorArguments

# The contenders of the issue, in table order: (LLaVA recipe flags, Qwen --tune).
# LLaVA flags follow scripts/v1_5/finetune_noise.sh, finetune_noise_lora.sh, finetune_lora.sh (rank 32, alpha 2r
# as its r128/a256), finetune.sh; Qwen's follow scripts/qwen/finetune_*.sh (r 32, alpha 32).
LORA_R = 32
CONTENDERS = {
    "MuNG": (
        ["--noise_generator", "True", "--freeze_backbone", "True", "--freeze_mm_mlp_adapter", "True",
         "--learning_rate", "5e-4", "--weight_decay", "0.1"],
        "noise",
    ),
    "MuNG+LoRA r32": (
        ["--lora_enable", "True", "--lora_r", str(LORA_R), "--lora_alpha", str(2 * LORA_R), "--mm_projector_lr", "2e-5",
         "--noise_generator", "True", "--ng_lr", "5e-4", "--learning_rate", "2e-4"],
        "noise_lora",
    ),
    "LoRA r32": (
        ["--lora_enable", "True", "--lora_r", str(LORA_R), "--lora_alpha", str(2 * LORA_R), "--mm_projector_lr", "2e-5",
         "--learning_rate", "2e-4"],
        "lora",
    ),
    # LLaVA: the LoRA recipe with --lora_use_dora True.
    "DoRA r32": (
        ["--lora_enable", "True", "--lora_use_dora", "True", "--lora_r", str(LORA_R), "--lora_alpha", str(2 * LORA_R),
         "--mm_projector_lr", "2e-5", "--learning_rate", "2e-4"],
        "dora",
    ),
    "full FT": (["--learning_rate", "2e-5"], "full"),
}
LLAVA_COMMON = [
    "--version", "v1", "--mm_projector_type", "mlp2x_gelu", "--mm_vision_select_layer", "-2",
    "--mm_use_im_start_end", "False", "--mm_use_im_patch_token", "False", "--image_aspect_ratio", "pad",
    "--model_max_length", "2048", "--lazy_preprocess", "True", "--report_to", "none",
]


def default_world_dir(preset: str, seed: int = 0) -> Path:
    return Path(tempfile.gettempdir()) / f"mung_benchmark_world_{preset}_seed{seed}"


def load_world(preset: str, directory: Optional[str] = None, seed: int = 0) -> dict:
    """The tiny-world manifest of ``preset`` (built once into ``directory``, reused afterwards)."""
    return tiny_world.build(str(directory or default_world_dir(preset, seed)), preset=preset, seed=seed, verbose=False)


def training_arguments(cls, flags: list[str], device: str) -> tuple:
    """Parse ``flags`` (+ output dir and device) with the backbone's own dataclasses ``cls``."""
    out = ["--output_dir", str(Path(tempfile.gettempdir()) / "mung_benchmark_unused_output")]
    if device == "cpu":
        out += ["--use_cpu", "True"]
    return transformers.HfArgumentParser(cls).parse_args_into_dataclasses(args=flags + out)


def llava_arguments(manifest: dict, contender: str, device: str) -> tuple:
    from llava_noise.train.args import DataArguments, ModelArguments, TrainingArguments

    flags = LLAVA_COMMON + [
        "--model_name_or_path", manifest["llava_llm"], "--vision_tower", manifest["llava_vision_tower"],
        "--data_path", manifest["llava_train_json"], "--image_folder", manifest["image_folder"],
    ] + CONTENDERS[contender][0]
    classes = (ModelArguments, DataArguments, TrainingArguments, NoiseGeneratorArguments)
    return training_arguments(classes, flags, device)


def build_llava(manifest: dict, contender: Optional[str], device: str = "cpu", seed: int = 0):
    """(model, tokenizer, args) of a LLaVA-1.5 contender prepared as ``llava_noise.train.train.train()`` does.

    ``contender`` None gives the plain model (no generator, no adapter, nothing frozen but the tower).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from llava_noise.train import train as llava_train

    model_args, data_args, training_args, ng_args = llava_arguments(manifest, contender or "full FT", device)
    torch.manual_seed(seed)  # the fresh projector: identical in every contender
    model = llava_train.build_model(model_args, training_args)
    if model_args.freeze_backbone:
        model.requires_grad_(False)  # as train() since d984fb8: the whole LLM, lm_head included
    model.get_model().initialize_vision_modules(model_args)
    model.get_vision_tower().load_model(device=training_args.device, dtype=torch.float32)
    if model_args.noise_generator:
        torch.manual_seed(seed + 1)
        model.get_model().initialize_noise_generator(ng_args.to_config(model.config.hidden_size))
    model.to(training_args.device)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, padding_side="right", use_fast=True,
                                              model_max_length=training_args.model_max_length)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    config = model.config
    config.image_aspect_ratio = data_args.image_aspect_ratio
    config.tokenizer_padding_side = tokenizer.padding_side
    config.tokenizer_model_max_length = training_args.model_max_length
    config.mm_use_im_start_end = model_args.mm_use_im_start_end
    config.mm_use_im_patch_token = model_args.mm_use_im_patch_token
    if training_args.lora_enable:
        lora_config = LoraConfig(
            r=training_args.lora_r, lora_alpha=training_args.lora_alpha, lora_dropout=training_args.lora_dropout,
            target_modules=llava_train.llm_lora_targets(model), bias=training_args.lora_bias, task_type="CAUSAL_LM",
            use_dora=training_args.lora_use_dora,
        )
        model = get_peft_model(model, lora_config)
    llava_train.set_trainable(model, model_args, training_args)
    return model, tokenizer, (model_args, data_args, training_args, ng_args)


def qwen_arguments(manifest: dict, contender: str, device: str) -> tuple:
    from qwen_noise.train.args import DataArguments, ModelArguments, TrainingArguments

    flags = ["--model_name_or_path", manifest["qwen_model"], "--data_path", manifest["qwen_train_json"],
             "--image_folder", manifest["image_folder"], "--tune", CONTENDERS[contender][1],
             "--lora_r", str(LORA_R), "--lora_alpha", str(LORA_R), "--report_to", "none"]
    classes = (ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments)
    return training_arguments(classes, flags, device)


def build_qwen(manifest: dict, contender: Optional[str], device: str = "cpu", seed: int = 0):
    """(model, processor, args) of a Qwen2.5-VL contender from ``qwen_noise.train.train.build_model``.

    ``contender`` None gives the stock model loaded through the same loader (no generator, no adapter).
    """
    from transformers import AutoProcessor

    from qwen_noise.model.builder import load_model
    from qwen_noise.train.train import build_model

    model_args, data_args, ng_args, training_args = qwen_arguments(manifest, contender or "full FT", device)
    torch.manual_seed(seed)
    if contender is None:
        model = load_model(model_args.model_name_or_path)
    else:
        model = build_model(model_args, ng_args, training_args)
    model.to(training_args.device)
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    return model, processor, (model_args, data_args, ng_args, training_args)
