"""Command-line flags of LLaVA-1.5 training (names as in the original LLaVA) plus MuNG's generator switch.

The generator's own flags (``--ng_*``) are ``noise_generator.training.NoiseGeneratorArguments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import transformers

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, MAX_BAD_SAMPLE_SHARE_HELP, check_bad_sample_flags
from noise_generator.guards import ON_NONFINITE, check_model_path, check_on_nonfinite
from noise_generator.training import OVERWRITE_OUTPUT_DIR_HELP

from ..conversation import conv_templates

IMAGE_ASPECT_RATIOS = ("square", "pad", "resize", "original")


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "The LLM (or a LLaVA checkpoint) to start from."})
    version: str = field(default="v0", metadata={"help": "Conversation template (plain, v1, llava_llama_2, ...)."})
    freeze_backbone: bool = field(default=False, metadata={"help": "Freeze the whole LLM, lm_head included (MuNG-only runs)."})
    tune_mm_mlp_adapter: bool = field(default=False, metadata={"help": "Train the projector only (pretraining)."})
    vision_tower: Optional[str] = field(default=None, metadata={"help": "Local CLIPVisionModel folder."})
    mm_vision_select_layer: int = field(default=-1, metadata={"help": "Tower hidden state to use (v1.5: -2)."})
    pretrain_mm_mlp_adapter: Optional[str] = field(default=None, metadata={"help": "mm_projector.bin from pretraining."})
    mm_projector_type: str = field(default="linear", metadata={"help": "linear | mlp<N>x_gelu | identity."})
    mm_use_im_start_end: bool = field(default=False)
    mm_use_im_patch_token: bool = field(default=True)
    mm_patch_merge_type: str = field(default="flat")
    mm_vision_select_feature: str = field(default="patch", metadata={"help": "patch (drop CLS) | cls_patch."})
    noise_generator: bool = field(default=False, metadata={"help": "Add MuNG's noise generator (trained in every mode)."})

    def __post_init__(self):
        check_model_path(self.model_name_or_path, "--model_name_or_path")
        if self.version not in conv_templates:
            raise ValueError(
                f"--version {self.version!r} is not a conversation template; use one of {', '.join(sorted(conv_templates))}."
            )


@dataclass
class DataArguments:
    data_path: Optional[str] = field(default=None, metadata={"help": "JSON (list) or JSONL training conversations."})
    lazy_preprocess: bool = field(default=False, metadata={"help": "Tokenise samples when first used."})
    is_multimodal: bool = False
    image_folder: Optional[str] = field(default=None, metadata={"help": "Folder the samples' image paths are relative to."})
    image_aspect_ratio: str = field(default="square", metadata={"help": "pad: pad to square with the mean colour."})
    on_bad_sample: str = field(
        default="skip",
        metadata={
            "help": "What to do with a sample that cannot be used (missing/corrupt image, bad format, no answer "
            "within --model_max_length): skip (the next good sample is used; counted in the log) or raise."
        },
    )
    max_bad_sample_share: float = field(default=DEFAULT_MAX_BAD_SAMPLE_SHARE, metadata={"help": MAX_BAD_SAMPLE_SHARE_HELP})

    def __post_init__(self):
        check_bad_sample_flags(self.on_bad_sample, self.max_bad_sample_share)
        if self.image_aspect_ratio not in IMAGE_ASPECT_RATIOS:
            raise ValueError(
                f"--image_aspect_ratio {self.image_aspect_ratio!r} is not supported; use {', '.join(IMAGE_ASPECT_RATIOS)}."
            )


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    cache_dir: Optional[str] = field(default=None)
    optim: str = field(default="adamw_torch")
    remove_unused_columns: bool = field(default=False)
    freeze_mm_mlp_adapter: bool = field(default=False)
    mpt_attn_impl: Optional[str] = field(default="triton")
    model_max_length: int = field(
        default=512, metadata={"help": "Longest sequence (image features included); longer samples are right-truncated."}
    )
    double_quant: bool = field(default=True, metadata={"help": "Double quantisation for --bits 4."})
    quant_type: str = field(default="nf4", metadata={"help": "fp4 | nf4 for --bits 4."})
    bits: int = field(default=16, metadata={"help": "4 | 8 (QLoRA through bitsandbytes) | 16."})
    lora_enable: bool = False
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_use_dora: bool = field(default=False, metadata={"help": "DoRA: weight-decomposed LoRA (peft use_dora)."})
    lora_weight_path: str = ""
    lora_bias: str = "none"
    mm_projector_lr: Optional[float] = None
    group_by_modality_length: bool = field(default=False)
    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_OUTPUT_DIR_HELP})
    on_nonfinite: str = field(
        default="raise",
        metadata={"help": f"NaN/inf in the generator output or loss: {' | '.join(ON_NONFINITE)} (drop that batch)."},
    )
    # Flags of the transformers versions the original LLaVA used, mapped onto their current names.
    warmup_ratio: Optional[float] = field(default=None, metadata={"help": "Warmup as a share of the steps (= --warmup_steps <1)."})
    evaluation_strategy: Optional[str] = field(default=None, metadata={"help": "Old name of --eval_strategy."})

    def __post_init__(self):
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise ValueError(f"--warmup_ratio {self.warmup_ratio} must be in [0, 1).")
            self.warmup_steps = self.warmup_ratio
        if self.evaluation_strategy is not None:
            self.eval_strategy = self.evaluation_strategy
        super().__post_init__()
        if self.bits not in (4, 8, 16):
            raise ValueError(f"--bits {self.bits} is not supported; use 4, 8 or 16.")
        if self.bits in (4, 8) and not self.lora_enable:
            raise ValueError("--bits 4/8 (QLoRA) needs --lora_enable True: quantised weights cannot be trained.")
        if self.lora_use_dora and not self.lora_enable:
            raise ValueError("--lora_use_dora True needs --lora_enable True (DoRA is a kind of LoRA adapter).")
        check_on_nonfinite(self.on_nonfinite)
        if self.lora_bias not in ("none", "all", "lora_only"):
            raise ValueError(f"--lora_bias {self.lora_bias!r}; use none, all or lora_only.")
