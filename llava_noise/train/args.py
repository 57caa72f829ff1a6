"""Command-line flags of LLaVA-1.5 training (names as in the original LLaVA) plus MuNG's generator switch.

The generator's own flags (``--ng_*``) are ``mung.training.flags.NoiseGeneratorArguments``. Flags of the original
that this code does not use are still accepted (recipes pass them); set to something else they are refused where
ignoring them would mislead (``--lora_weight_path``, ``--mm_patch_merge_type``) and warned about otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, MAX_BAD_SAMPLE_SHARE_HELP, check_bad_sample_flags
from mung.paths import check_model_path
from mung.training import flags
from mung.training.flags import refuse_ignored, warn_ignored

from ..conversation import conv_templates

IMAGE_ASPECT_RATIOS = ("square", "pad", "resize", "original")
QUANT_TYPES = ("nf4", "fp4")
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_bias")


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
    mm_use_im_start_end: bool = field(default=False, metadata={"help": "Wrap each image as <im_start><image><im_end>."})
    mm_use_im_patch_token: bool = field(default=True, metadata={"help": "Add LLaVA's <im_patch> token to the tokenizer."})
    mm_patch_merge_type: str = field(
        default="flat", metadata={"help": "flat (LLaVA-1.5; the spatial merges of LLaVA-NeXT's anyres are not here)."}
    )
    mm_vision_select_feature: str = field(default="patch", metadata={"help": "patch (drop CLS) | cls_patch."})
    noise_generator: bool = field(default=False, metadata={"help": "Add MuNG's noise generator (trained in every mode)."})

    def __post_init__(self):
        check_model_path(self.model_name_or_path, "--model_name_or_path")
        refuse_ignored(self, ["mm_patch_merge_type"], "only flat (LLaVA-1.5) is implemented; LLaVA-NeXT's spatial "
                       "merges of anyres tiles are not. Leave the flag out.")
        if self.version not in conv_templates:
            raise ValueError(
                f"--version {self.version!r} is not a conversation template; use one of {', '.join(sorted(conv_templates))}."
            )


@dataclass
class DataArguments:
    data_path: Optional[str] = field(default=None, metadata={"help": "JSON (list) or JSONL training conversations."})
    lazy_preprocess: bool = field(default=False, metadata={"help": "Tokenise samples when first used."})
    is_multimodal: bool = field(
        default=False, metadata={"help": "Accepted for LLaVA's recipes and ignored: --vision_tower makes a run multimodal."}
    )
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
        warn_ignored(self, ["is_multimodal"], "every run with --vision_tower is multimodal; samples without an image "
                     "train as text-only ones.")
        if self.image_aspect_ratio not in IMAGE_ASPECT_RATIOS:
            raise ValueError(
                f"--image_aspect_ratio {self.image_aspect_ratio!r} is not supported; use {', '.join(IMAGE_ASPECT_RATIOS)}."
            )


@dataclass
class TrainingArguments(flags.TrainingArguments):
    cache_dir: Optional[str] = field(default=None, metadata={"help": "transformers' cache folder for from_pretrained."})
    optim: str = field(default="adamw_torch", metadata={"help": "The optimizer (a transformers --optim name)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator needs every field."})
    freeze_mm_mlp_adapter: bool = field(default=False, metadata={"help": "Keep the projector frozen."})
    mpt_attn_impl: Optional[str] = field(
        default="triton", metadata={"help": "Accepted for LLaVA's recipes and ignored: there is no MPT backbone here."}
    )
    model_max_length: int = field(
        default=512, metadata={"help": "Longest sequence (image features included); longer samples are right-truncated."}
    )
    double_quant: bool = field(default=True, metadata={"help": "Double quantisation for --bits 4."})
    quant_type: str = field(default="nf4", metadata={"help": "fp4 | nf4 for --bits 4."})
    bits: int = field(default=16, metadata={"help": "4 | 8 (QLoRA through bitsandbytes) | 16."})
    lora_enable: bool = field(default=False, metadata={"help": "Train LoRA adapters on the LLM's linear layers."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_use_dora: bool = field(default=False, metadata={"help": "DoRA: weight-decomposed LoRA (peft use_dora)."})
    lora_weight_path: str = field(
        default="", metadata={"help": "Not supported (refused when set): resume a LoRA run from its --output_dir."}
    )
    lora_bias: str = field(default="none", metadata={"help": "none | all | lora_only: which biases train."})
    mm_projector_lr: Optional[float] = field(default=None, metadata={"help": "The projector's learning rate."})
    group_by_modality_length: bool = field(default=False, metadata={"help": "Batches of one modality each."})
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
        if self.lora_bias not in ("none", "all", "lora_only"):
            raise ValueError(f"--lora_bias {self.lora_bias!r}; use none, all or lora_only.")
        if self.quant_type not in QUANT_TYPES:
            raise ValueError(f"--quant_type {self.quant_type!r} is not supported; use {' or '.join(QUANT_TYPES)}.")
        self.check_unused_flags()

    def check_unused_flags(self) -> None:
        refuse_ignored(self, ["lora_weight_path"], "loading LoRA weights into a new run is not supported. To continue "
                       "a LoRA run pass its --output_dir (or --resume_from_checkpoint checkpoint-N); to start from a "
                       "trained adapter merge it first (scripts/merge_lora_weights.py) and pass the merged model as "
                       "--model_name_or_path.")
        warn_ignored(self, ["mpt_attn_impl"], "there is no MPT backbone here (LLaVA-1.5 on Llama).")
        if self.bits != 4:
            warn_ignored(self, ["double_quant", "quant_type"], "it applies to --bits 4 only.")
        if not self.lora_enable:
            warn_ignored(self, LORA_FLAGS, "it applies with --lora_enable True only.")


def check_flag_combinations(model_args: ModelArguments, training_args: TrainingArguments, ng_args) -> None:
    """Flags that mean nothing together with others, checked right after parsing (before any weights load)."""
    if training_args.mm_projector_lr is not None and training_args.freeze_mm_mlp_adapter:
        raise ValueError(
            "--mm_projector_lr is set but --freeze_mm_mlp_adapter True keeps the projector frozen; drop one of them."
        )
    if not model_args.noise_generator:
        warn_ignored(ng_args, [f.name for f in dataclasses.fields(ng_args)], "it applies with --noise_generator "
                     "True only.")
