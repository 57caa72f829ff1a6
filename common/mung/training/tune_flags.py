"""The ``--tune`` flags of the backbones built on transformers' own model classes (Qwen2.5-VL, any transformers VLM):
what trains (``noise`` / ``noise_lora`` / LoRA tunes / ``full``), quantisation and LoRA, and the training data.
A backbone subclasses these dataclasses for its own help texts, tunes and extra flags. A flag the chosen ``--tune``
does not use is refused where ignoring it would mislead (a training switch of a frozen part) and warned about
otherwise (``check_tune_flags``)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from ..bad_samples import DEFAULT_MAX_BAD_SAMPLE_SHARE, MAX_BAD_SAMPLE_SHARE_HELP, check_bad_sample_flags
from ..paths import check_model_path
from .flags import warn_ignored

# LoRA goes on these linears of the language model's decoder layers only (never the vision side, the generator or
# the output head); the names the supported decoders use.
LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target")
GENERATOR_TUNES = ("noise", "noise_lora")


@dataclass
class TuneArguments:
    model_name_or_path: str = field(metadata={"help": "Folder of the model to start from."})
    tune: str = field(default="noise", metadata={"help": "What trains (see the backbone's help)."})
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
            "layers of the language model, so neither the vision side nor the generator's own q_proj / v_proj is "
            "touched)."
        },
    )

    TUNES: ClassVar[tuple[str, ...]] = ("noise", "noise_lora", "lora", "full")
    LORA_TUNES: ClassVar[tuple[str, ...]] = ("noise_lora", "lora")

    def __post_init__(self) -> None:
        check_model_path(self.model_name_or_path, "--model_name_or_path")
        if self.tune not in self.TUNES:
            raise ValueError(f"--tune {self.tune!r} is not one of {', '.join(self.TUNES)}.")
        if self.bits not in (4, 8, 16):
            raise ValueError(f"--bits must be 4, 8 or 16, got {self.bits}.")
        if self.bits != 16 and self.tune == "full":
            raise ValueError("--bits 4/8 cannot be combined with --tune full (quantised weights are not trainable).")

    @property
    def uses_generator(self) -> bool:
        return self.tune in GENERATOR_TUNES

    @property
    def uses_lora(self) -> bool:
        return self.tune in self.LORA_TUNES

    def lora_target_regex(self, decoder_name: str = "model.language_model") -> str:
        """peft ``target_modules``: the ``--lora_target`` leaves inside the decoder layers of the language model at
        ``decoder_name`` (its qualified name in the model)."""
        names = [name.strip() for name in self.lora_target.split(",") if name.strip()]
        if not names or not all(name.isidentifier() for name in names):
            raise ValueError(f"--lora_target must be comma-separated module names, got {self.lora_target!r}.")
        return rf"^{re.escape(decoder_name)}\.layers\.\d+\.(?:.*\.)?({'|'.join(names)})$"


@dataclass
class ConversationDataArguments:
    data_path: str = field(metadata={"help": "Training JSON / JSONL of conversation records."})
    image_folder: Optional[str] = field(default=None, metadata={"help": "Folder the image paths are relative to."})
    on_bad_sample: str = field(
        default="skip",
        metadata={
            "help": "What to do with a sample that cannot be used (too long for --model_max_length, missing or "
            "unreadable image, bad format, no answer tokens): skip (counted in the log) or raise."
        },
    )
    max_bad_sample_share: float = field(default=DEFAULT_MAX_BAD_SAMPLE_SHARE,
                                        metadata={"help": MAX_BAD_SAMPLE_SHARE_HELP})

    def __post_init__(self) -> None:
        check_bad_sample_flags(self.on_bad_sample, self.max_bad_sample_share)


def check_tune_flags(model_args: TuneArguments, ng_args, frozen_vision: str = "the vision encoder") -> None:
    """Flags the chosen --tune does not use, checked right after parsing (before any weights load)."""
    if model_args.tune_vision_tower and model_args.tune != "full":
        raise ValueError(
            f"--tune_vision_tower True needs --tune full (with --tune {model_args.tune} {frozen_vision} stays frozen)."
        )
    if not model_args.uses_lora:
        warn_ignored(model_args, LORA_FLAGS, f"--tune {model_args.tune} puts no LoRA on the model.")
    if not model_args.uses_generator:
        warn_ignored(ng_args, [f.name for f in dataclasses.fields(ng_args)], f"--tune {model_args.tune} trains no "
                     "noise generator.")
