"""The models the training-step and inference benchmarks compare, built through the backbones' own code paths.

- LLaVA-1.5: the flags of the ``scripts/v1_5`` recipes parsed by ``llava_noise.train``'s own dataclasses, then
  ``llava_noise.train.prepare.prepare_model``, the function training calls.
- Qwen2.5-VL: ``qwen_noise.train.prepare.prepare_model`` with the ``--tune`` of each recipe.

Every contender starts from the same tiny-world checkpoint and the same seed, so the frozen weights are identical.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import torch
import transformers

import tiny_world
from mung.training.flags import NoiseGeneratorArguments

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
    """(model, tokenizer, args) of a LLaVA-1.5 contender, prepared by ``prepare_model`` as training prepares it.

    ``contender`` None gives the plain model (no generator, no adapter, nothing frozen but the tower).
    """
    from llava_noise.train.prepare import prepare_model

    model_args, data_args, training_args, ng_args = llava_arguments(manifest, contender or "full FT", device)
    torch.manual_seed(seed)  # the fresh projector and generator: identical in every contender that has them
    model, tokenizer = prepare_model(model_args, data_args, training_args, ng_args)
    model.to(training_args.device)
    return model, tokenizer, (model_args, data_args, training_args, ng_args)


def qwen_arguments(manifest: dict, contender: str, device: str) -> tuple:
    from qwen_noise.train.args import DataArguments, ModelArguments, TrainingArguments

    tune = CONTENDERS[contender][1]
    flags = ["--model_name_or_path", manifest["qwen_model"], "--data_path", manifest["qwen_train_json"],
             "--image_folder", manifest["image_folder"], "--tune", tune, "--report_to", "none"]
    if tune in ("noise_lora", "lora", "dora"):
        flags += ["--lora_r", str(LORA_R), "--lora_alpha", str(LORA_R)]
    classes = (ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments)
    return training_arguments(classes, flags, device)


def build_qwen(manifest: dict, contender: Optional[str], device: str = "cpu", seed: int = 0):
    """(model, processor, args) of a Qwen2.5-VL contender, prepared by ``prepare_model`` as training prepares it.

    ``contender`` None gives the stock model loaded through the same loader (no generator, no adapter).
    """
    from transformers import AutoProcessor

    from qwen_noise.model.builder import load_model
    from qwen_noise.train.prepare import prepare_model

    model_args, data_args, ng_args, training_args = qwen_arguments(manifest, contender or "full FT", device)
    torch.manual_seed(seed)
    if contender is None:
        model = load_model(model_args.model_name_or_path)
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    else:
        model, processor = prepare_model(model_args, training_args, ng_args)
    model.to(training_args.device)
    return model, processor, (model_args, data_args, ng_args, training_args)
