"""Command-line flags of ``python -m qwen_noise.train.train`` (besides every transformers TrainingArguments flag and
the shared ``--ng_*`` generator flags). A flag the chosen ``--tune`` does not use is refused where ignoring it would
mislead (a learning rate or training switch of a frozen part) and warned about otherwise."""

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from mung.training import flags
from mung.training.tune_flags import ConversationDataArguments, TuneArguments, check_tune_flags


@dataclass
class ModelArguments(TuneArguments):
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

    TUNES: ClassVar[tuple[str, ...]] = ("noise", "noise_lora", "lora", "dora", "full")
    LORA_TUNES: ClassVar[tuple[str, ...]] = ("noise_lora", "lora", "dora")


@dataclass
class DataArguments(ConversationDataArguments):
    data_path: str = field(metadata={"help": "Training JSON / JSONL (conversations or converted MMPR items)."})
    min_pixels: Optional[int] = field(default=None, metadata={"help": "Lower bound of image pixels (qwen-vl-utils)."})
    max_pixels: Optional[int] = field(default=None, metadata={"help": "Upper bound of image pixels (qwen-vl-utils)."})


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
    check_tune_flags(model_args, ng_args, frozen_vision="the vision tower")
    check_group_lr_flags(model_args, training_args)
