"""Command-line flags of ``python -m vlm_noise.train.train`` (besides every transformers TrainingArguments flag and the
shared ``--ng_*`` generator flags). A flag the chosen ``--tune`` does not use is refused where ignoring it would
mislead (a training switch of a frozen part) and warned about otherwise."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

from mung.bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, MAX_BAD_SAMPLE_SHARE_HELP, check_bad_sample_flags
from mung.paths import check_model_path
from mung.training import flags
from mung.training.flags import warn_ignored

TUNES = ("noise", "noise_lora", "lora", "full")
# LoRA goes on these linears of the language model's decoder layers only (never the vision side, the generator or
# the output head); the names every supported family's decoder uses.
LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target")


@dataclass
class ModelArguments:
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
    tune_vision_tower: bool = field(
        default=False, metadata={"help": "With --tune full, also train the vision encoder (frozen otherwise)."}
    )
    bits: int = field(default=16, metadata={"help": "16, or 8 / 4 to load the language model with bitsandbytes "
                                                    "(QLoRA; needs a GPU)."})
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target: str = field(
        default=",".join(LLM_LINEARS),
        metadata={
            "help": "Comma-separated leaf names of the language model's linears to adapt (anchored on the decoder "
            "layers of the model's language model, so neither the vision side nor the generator's own q_proj / "
            "v_proj is touched)."
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
        return self.tune in ("noise_lora", "lora")

    def lora_target_regex(self, decoder_name: str) -> str:
        """peft ``target_modules``: the ``--lora_target`` leaves inside the decoder layers of the language model at
        ``decoder_name`` (its qualified name in the model, e.g. ``model.language_model``)."""
        names = [name.strip() for name in self.lora_target.split(",") if name.strip()]
        if not names or not all(name.isidentifier() for name in names):
            raise ValueError(f"--lora_target must be comma-separated module names, got {self.lora_target!r}.")
        return rf"^{re.escape(decoder_name)}\.layers\.\d+\.(?:.*\.)?({'|'.join(names)})$"


@dataclass
class DataArguments:
    data_path: str = field(metadata={"help": "Training JSON / JSONL of conversation records (LLaVA / Qwen format: "
                                             "'image' path(s), 'conversations' with from human|gpt|system)."})
    image_folder: Optional[str] = field(default=None, metadata={"help": "Folder the image paths are relative to."})
    on_bad_sample: str = field(
        default="skip",
        metadata={
            "help": "What to do with a sample that cannot be used (longer than --model_max_length, missing or "
            "unreadable image, bad format, no answer tokens): skip (counted in the log) or raise."
        },
    )
    max_bad_sample_share: float = field(default=DEFAULT_MAX_BAD_SAMPLE_SHARE,
                                        metadata={"help": MAX_BAD_SAMPLE_SHARE_HELP})

    def __post_init__(self) -> None:
        check_bad_sample_flags(self.on_bad_sample, self.max_bad_sample_share)


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
    if model_args.tune_vision_tower and model_args.tune != "full":
        raise ValueError(
            f"--tune_vision_tower True needs --tune full (with --tune {model_args.tune} the vision encoder stays "
            "frozen)."
        )
    if not model_args.uses_lora:
        warn_ignored(model_args, LORA_FLAGS, f"--tune {model_args.tune} puts no LoRA on the model.")
    if not model_args.uses_generator:
        warn_ignored(ng_args, [f.name for f in dataclasses.fields(ng_args)], f"--tune {model_args.tune} trains no "
                     "noise generator.")
