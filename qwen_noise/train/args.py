"""Command-line flags of ``python -m qwen_noise.train.train`` (besides every transformers TrainingArguments flag and
the shared ``--ng_*`` generator flags). A flag the chosen ``--tune`` does not use is refused where ignoring it would
mislead (a learning rate or training switch of a frozen part) and warned about otherwise."""

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, MAX_BAD_SAMPLE_SHARE_HELP, check_bad_sample_flags
from mung.paths import check_model_path
from mung.training import flags
from mung.training.flags import warn_ignored

TUNES = ("noise", "noise_lora", "lora", "dora", "full")
# LoRA goes on the language model's linear layers only (never the vision tower, merger, generator or lm_head).
LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Qwen2.5-VL folder (stock or tuned) to start from."})
    tune: str = field(
        default="noise",
        metadata={
            "help": "noise: MLLM frozen, generator trained (MuNG). noise_lora: generator + LoRA on the LLM. "
            "lora / dora: LoRA / DoRA baseline without generator. full: full fine-tuning of the LLM and merger "
            "without generator."
        },
    )
    tune_vision_tower: bool = field(
        default=False, metadata={"help": "With --tune full, also train the vision tower's blocks (frozen otherwise)."}
    )
    bits: int = field(default=16, metadata={"help": "16, or 8 / 4 to load the LLM with bitsandbytes (QLoRA)."})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target: str = field(
        default=",".join(LLM_LINEARS),
        metadata={
            "help": "Comma-separated leaf names of the language model's linears to adapt (anchored on "
            "model.language_model, so the vision tower is never touched)."
        },
    )

    def __post_init__(self) -> None:
        check_model_path(self.model_name_or_path, "--model_name_or_path")
        if self.tune not in TUNES:
            raise ValueError(f"--tune {self.tune!r} is not one of {', '.join(TUNES)}.")
        if self.bits not in (4, 8, 16):
            raise ValueError(f"--bits must be 4, 8 or 16, got {self.bits}.")
        if self.bits != 16 and self.tune == "full":
            raise ValueError("--bits 4/8 cannot be combined with --tune full (quantised weights are not trainable).")

    @property
    def uses_generator(self) -> bool:
        return self.tune in ("noise", "noise_lora")

    @property
    def uses_lora(self) -> bool:
        return self.tune in ("noise_lora", "lora", "dora")

    def lora_target_regex(self) -> str:
        names = [name.strip() for name in self.lora_target.split(",") if name.strip()]
        if not names or not all(name.isidentifier() for name in names):
            raise ValueError(f"--lora_target must be comma-separated module names, got {self.lora_target!r}.")
        return rf"^model\.language_model\.layers\.\d+\.(?:.*\.)?({'|'.join(names)})$"


@dataclass
class DataArguments:
    data_path: str = field(metadata={"help": "Training JSON / JSONL (conversations or converted MMPR items)."})
    image_folder: Optional[str] = field(default=None, metadata={"help": "Folder the image paths are relative to."})
    min_pixels: Optional[int] = field(default=None, metadata={"help": "Lower bound of image pixels (qwen-vl-utils)."})
    max_pixels: Optional[int] = field(default=None, metadata={"help": "Upper bound of image pixels (qwen-vl-utils)."})
    on_bad_sample: str = field(
        default="skip",
        metadata={
            "help": "What to do with a sample that cannot be used (truncation would split an image or drop every "
            "answer token, unreadable image, bad format): skip (counted in the log) or raise."
        },
    )
    max_bad_sample_share: float = field(default=DEFAULT_MAX_BAD_SAMPLE_SHARE, metadata={"help": MAX_BAD_SAMPLE_SHARE_HELP})

    def __post_init__(self) -> None:
        check_bad_sample_flags(self.on_bad_sample, self.max_bad_sample_share)


@dataclass
class TrainingArguments(flags.TrainingArguments):
    model_max_length: int = field(
        default=1024, metadata={"help": "Longest tokenised sample; longer ones are truncated (never inside an image)."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every batch key (mm_token_type_ids is needed for 3-D rope)."}
    )
    merger_lr: Optional[float] = field(
        default=None,
        metadata={"help": "Learning rate of the vision merger (--tune full); default: --learning_rate. A higher one "
                  "helps a new merger catch up with a pretrained LLM, as --mm_projector_lr does for LLaVA."},
    )
    vision_lr: Optional[float] = field(
        default=None,
        metadata={"help": "Learning rate of the vision tower's blocks (--tune full --tune_vision_tower True)."},
    )


def check_group_lr_flags(model_args: ModelArguments, training_args: TrainingArguments) -> None:
    """--merger_lr / --vision_lr only mean something when that part trains; refuse them rather than ignore them."""
    if training_args.merger_lr is not None and model_args.tune != "full":
        raise ValueError(
            f"--merger_lr applies to --tune full only (the merger is frozen with --tune {model_args.tune})."
        )
    if training_args.vision_lr is not None and not (model_args.tune == "full" and model_args.tune_vision_tower):
        raise ValueError(
            "--vision_lr needs --tune full --tune_vision_tower True (the vision tower is frozen otherwise)."
        )


def check_flag_combinations(model_args: ModelArguments, training_args: TrainingArguments, ng_args) -> None:
    """Flags the chosen --tune does not use, checked right after parsing (before any weights load)."""
    if model_args.tune_vision_tower and model_args.tune != "full":
        raise ValueError(
            f"--tune_vision_tower True needs --tune full (with --tune {model_args.tune} the vision tower stays frozen)."
        )
    check_group_lr_flags(model_args, training_args)
    if not model_args.uses_lora:
        warn_ignored(model_args, LORA_FLAGS, f"--tune {model_args.tune} puts no LoRA on the model.")
    if not model_args.uses_generator:
        warn_ignored(ng_args, [f.name for f in dataclasses.fields(ng_args)], f"--tune {model_args.tune} trains no "
                     "noise generator.")
