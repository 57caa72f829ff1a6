"""Training flags every backbone shares.

- ``NoiseGeneratorArguments``: the ``--ng_*`` flags, one per ``NoiseGeneratorConfig`` field (its help text reused),
  built from the config's fields, so a new setting gets its flag without another change; plus ``--ng_lr``. The
  values are checked by building the config (``check_generator_flags``), whose error is worded with the flag names.
- ``TrainingArguments``: transformers' flags plus ``--on_nonfinite`` and MuNG's meaning of ``--overwrite_output_dir``;
  each backbone's ``TrainingArguments`` subclasses it.
- ``compute_dtype``: the dtype models are loaded in for training.
- ``changed_flags`` / ``warn_ignored`` / ``refuse_ignored``: flags a run accepts but would not use.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from typing import Any, Iterable, Optional

import torch
import transformers

from noise_generator import InvalidSetting, NoiseGeneratorConfig

logger = logging.getLogger(__name__)

# Config fields a backbone fills in (never a flag).
SET_BY_BACKBONE = ("hidden_size", "base_model_type")
# Flag names older than the config's field names (kept for the recipes), and their aliases.
FLAG_NAMES = {"num_heads": "ng_heads"}
FLAG_ALIASES = {"num_heads": ["--ng_num_heads"]}
NG_LR_HELP = "Learning rate of the generator; default: the run's --learning_rate."

ON_NONFINITE = ("raise", "skip_step")
ON_NONFINITE_HELP = f"NaN/inf in the generator output or loss: {' | '.join(ON_NONFINITE)} (drop that batch)."
TRUST_CHECKPOINT_HELP = (
    "Resume without checking the checkpoint's pickle files (optimizer.pt, rng_state*.pth, DeepSpeed's "
    "global_stepN/*.pt) with the weights-only reader first. Only for checkpoints from a source you trust: DeepSpeed "
    "unpickles its files with the full unpickler, which can run code."
)
OVERWRITE_OUTPUT_DIR_HELP = (
    "Train from scratch into --output_dir, removing the checkpoint-N folders and trainer_state.json of an earlier "
    "run there. Without it an unfinished run there is resumed and a finished one is left as it is (nothing to do)."
)


def flag_name(setting: str) -> str:
    """The flag (without dashes) of a ``NoiseGeneratorConfig`` field: ``ng_<field>`` unless renamed above."""
    return FLAG_NAMES.get(setting, f"ng_{setting}")


class GeneratorFlags:
    """Base of the ``--ng_*`` dataclass (``generator_flags``): turns the flags into a ``NoiseGeneratorConfig``."""

    config_class: typing.ClassVar[type] = NoiseGeneratorConfig

    def settings(self) -> dict[str, Any]:
        """The config fields the flags set (all but those the backbone fills in)."""
        return {f.name: getattr(self, flag_name(f.name)) for f in fields(self.config_class)
                if f.name not in SET_BY_BACKBONE}

    def to_config(self, hidden_size: int, base_model_type: Optional[str] = None) -> NoiseGeneratorConfig:
        """The generator config of these flags for a model of ``hidden_size``; a bad value names its flag."""
        try:
            return self.config_class(hidden_size=hidden_size, base_model_type=base_model_type, **self.settings())
        except InvalidSetting as err:
            raise ValueError(err.describe(flag_or_description)) from None


def flag_or_description(setting: str) -> str:
    """How training names a generator setting: its ``--ng_*`` flag, or what sets it when no flag does."""
    return "the model's hidden size" if setting == "hidden_size" else f"--{flag_name(setting)}"


def _default_of(spec) -> dict[str, Any]:
    if spec.default is not MISSING:
        return {"default": spec.default}
    if spec.default_factory is not MISSING:
        return {"default_factory": spec.default_factory}
    raise TypeError(f"{spec.name} has no default; every generator setting needs one to be a flag.")


def _default_value(spec) -> Any:
    return spec.default_factory() if spec.default is MISSING and spec.default_factory is not MISSING else spec.default


def generator_flags(config_class: type = NoiseGeneratorConfig) -> type:
    """The dataclass of ``--ng_*`` flags of ``config_class``: one per field (help text and default of the field),
    except those the backbone fills in, plus ``--ng_lr``."""
    hints = typing.get_type_hints(config_class)
    specs = []
    for spec in fields(config_class):
        if spec.name in SET_BY_BACKBONE:
            continue
        metadata = {"help": spec.metadata.get("help", "")}
        if spec.name in FLAG_ALIASES:
            metadata["aliases"] = FLAG_ALIASES[spec.name]
        specs.append((flag_name(spec.name), hints[spec.name], field(metadata=metadata, **_default_of(spec))))
    specs.append(("ng_lr", Optional[float], field(default=None, metadata={"help": NG_LR_HELP})))
    flags = make_dataclass("NoiseGeneratorArguments", specs, bases=(GeneratorFlags,),
                           namespace={"config_class": config_class})
    flags.__module__ = __name__
    return flags


NoiseGeneratorArguments = generator_flags()


def check_generator_flags(ng_args: GeneratorFlags) -> None:
    """Raise a ``ValueError`` naming the ``--ng_*`` flag whose value cannot work, before any model is loaded: the
    config is built for a stand-in width the head count divides (the real width is checked in ``to_config``)."""
    heads = ng_args.settings().get("num_heads")
    ng_args.to_config(hidden_size=heads if isinstance(heads, int) and heads > 0 else 1)
    if ng_args.ng_lr is not None and not ng_args.ng_lr > 0:
        raise ValueError(f"--ng_lr {ng_args.ng_lr!r} must be positive.")


def check_run_length(max_steps: int, num_train_epochs: float) -> None:
    """Refuse a run that would train nothing: ``--max_steps 0`` (transformers would take one step at learning rate
    0 and save it as finished), or no ``--max_steps`` and ``--num_train_epochs`` 0 or less."""
    if max_steps == 0:
        raise ValueError("--max_steps 0 trains nothing; pass a positive number of steps, or leave it out (-1) to "
                         "train for --num_train_epochs.")
    if max_steps < 0 and not num_train_epochs > 0:
        raise ValueError(f"--num_train_epochs {num_train_epochs} trains nothing; pass a positive number of epochs "
                         "(or a positive --max_steps).")


def check_on_nonfinite(value: str) -> None:
    if value not in ON_NONFINITE:
        raise ValueError(f"--on_nonfinite {value!r} is not supported; choose one of {', '.join(ON_NONFINITE)}.")


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    """transformers' flags plus what MuNG's Trainers read; each backbone's ``TrainingArguments`` subclasses it."""

    overwrite_output_dir: bool = field(default=False, metadata={"help": OVERWRITE_OUTPUT_DIR_HELP})
    on_nonfinite: str = field(default="raise", metadata={"help": ON_NONFINITE_HELP})
    trust_checkpoint: bool = field(default=False, metadata={"help": TRUST_CHECKPOINT_HELP})

    def __post_init__(self) -> None:
        check_on_nonfinite(self.on_nonfinite)
        check_run_length(self.max_steps, self.num_train_epochs)
        super().__post_init__()
        if self.dataloader_pin_memory and (self.use_cpu or not torch.accelerator.is_available()):
            # Pinned memory only speeds copies to an accelerator; without one torch warns on every DataLoader.
            self.dataloader_pin_memory = False


def compute_dtype(training_args) -> torch.dtype:
    """The dtype models are loaded in for training: ``--bf16`` / ``--fp16`` (transformers flags), else float32."""
    if training_args.bf16:
        return torch.bfloat16
    if training_args.fp16:
        return torch.float16
    return torch.float32


def changed_flags(args: Any, names: Iterable[str]) -> list[str]:
    """The flags among ``names`` that ``args`` (a dataclass of flags) sets away from their defaults."""
    defaults = {spec.name: _default_value(spec) for spec in fields(args)}
    return [name for name in names if getattr(args, name) != defaults[name]]


def warn_ignored(args: Any, names: Iterable[str], why: str) -> list[str]:
    """Warn once per flag of ``names`` set away from its default that this run will not use it (``why``)."""
    changed = changed_flags(args, names)
    for name in changed:
        logger.warning("--%s %s is ignored: %s", name, getattr(args, name), why)
    return changed


def refuse_ignored(args: Any, names: Iterable[str], why: str) -> None:
    """Refuse the first flag of ``names`` set away from its default, where ignoring it would mislead (``why``)."""
    for name in changed_flags(args, names):
        raise ValueError(f"--{name} {getattr(args, name)!r}: {why}")
