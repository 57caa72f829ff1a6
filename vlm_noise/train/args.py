"""Command-line flags of ``python -m vlm_noise.train.train`` (besides every transformers TrainingArguments flag and the
shared ``--ng_*`` generator flags). A flag the chosen ``--tune`` does not use is refused where ignoring it would
mislead (a training switch of a frozen part) and warned about otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field

from mung.training import flags
from mung.training.tune_flags import ConversationDataArguments, TuneArguments, check_tune_flags


@dataclass
class ModelArguments(TuneArguments):
    model_name_or_path: str = field(
        metadata={"help": "Folder of any transformers VLM that AutoModelForImageTextToText loads (with its processor "
                  "and chat template), or a MuNG folder of one (save_pretrained with a generator attached)."}
    )
    tune: str = field(
        default="noise",
        metadata={
            "help": "noise: VLM frozen, generator trained (MuNG). noise_lora: generator + LoRA on the language "
            "model. lora: LoRA baseline without generator. full: full fine-tuning of the language model, its output "
            "head and the vision-to-text connector, without generator."
        },
    )


@dataclass
class DataArguments(ConversationDataArguments):
    data_path: str = field(metadata={"help": "Training JSON / JSONL of conversation records (LLaVA / Qwen format: "
                                             "'image' path(s), 'conversations' with from human|gpt|system)."})


@dataclass
class TrainingArguments(flags.TrainingArguments):
    model_max_length: int = field(
        default=2048,
        metadata={"help": "Longest sample in tokens, image tokens included; a longer one is a bad sample (never cut: "
                  "a cut could split an image's tokens or drop the answer)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every batch key (each family's processor adds its own image inputs)."}
    )


def check_flag_combinations(model_args: ModelArguments, ng_args) -> None:
    """Flags the chosen --tune does not use, checked right after parsing (before any weights load)."""
    check_tune_flags(model_args, ng_args)
