"""``MuNGConfig``: the peft config of a MuNG adapter.

Its generator fields are generated from ``NoiseGeneratorConfig`` (same names, defaults and help texts), never
written out twice, with two differences:

- ``hidden_size`` defaults to None: the tuner fills it (and ``base_model_type``) from the model it goes into;
- the generator's ``inference_mode`` (sample | mean | off) is called ``noise_mode`` here, because peft's
  ``PeftConfig.inference_mode`` is a bool (adapter frozen for inference) with another meaning.

LoRA on the language model is part of the same adapter (``lora_r > 0``): one model cannot hold adapters of two peft
types, and MuNG + LoRA is the paper's LLaVA setting. ``modules_to_save`` and ``trainable_token_indices`` are there
because TRL writes them when it gives a model a new chat template.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields, make_dataclass
from typing import Any, Optional, Union

from peft.config import PeftConfig

from ..config import NoiseGeneratorConfig

# generator setting -> its name in MuNGConfig
RENAMED = {"inference_mode": "noise_mode"}
FILLED_FROM_MODEL = ("hidden_size", "base_model_type")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _generator_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, field) of every ``NoiseGeneratorConfig`` setting, renamed per ``RENAMED``."""
    generated = []
    for spec in fields(NoiseGeneratorConfig):
        help_text = spec.metadata.get("help", "")
        if spec.name in FILLED_FROM_MODEL:
            kind = Optional[int] if spec.name == "hidden_size" else Optional[str]
            generated.append((spec.name, kind, field(default=None, metadata={
                "help": help_text + " Filled from the model by get_peft_model when left None."})))
            continue
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        generated.append((RENAMED.get(spec.name, spec.name), spec.type, field(default=default,
                                                                               metadata={"help": help_text})))
    return generated


_OWN_FIELDS = [
    ("lora_r", int, field(default=0, metadata={"help": "LoRA rank on the language model's linears, in this same "
                                                          "adapter (MuNG + LoRA); 0: the generator alone."})),
    ("lora_alpha", int, field(default=16, metadata={"help": "LoRA alpha (scale alpha / r)."})),
    ("lora_dropout", float, field(default=0.0, metadata={"help": "LoRA dropout."})),
    ("target_modules", Optional[Union[list[str], str]], field(default=None, metadata={
        "help": "LoRA's targets: leaf module names inside the language model's decoder (default: "
                + ", ".join(DEFAULT_LORA_TARGETS) + "). Never the vision side or the generator. Only with lora_r > 0."})),
    ("modules_to_save", Optional[list[str]], field(default=None, metadata={
        "help": "Other modules trained in full and saved with the adapter (peft's meaning)."})),
    ("trainable_token_indices", Optional[Union[list[int], dict[str, list[int]]]], field(default=None, metadata={
        "help": "Token rows of the embeddings trained and saved with the adapter (peft's meaning; TRL sets it "
                "when it adds chat-template tokens)."})),
]


def _post_init(self) -> None:
    if self.task_type is None:
        self.task_type = "CAUSAL_LM"  # routes PeftModel's forward through the tuner (m noise draws)
    PeftConfig.__post_init__(self)
    from .registration import mung_peft_type

    self.peft_type = mung_peft_type()
    if self.lora_r < 0:
        raise ValueError(f"MuNGConfig.lora_r={self.lora_r!r} must be >= 0 (0: no LoRA).")
    if self.lora_r and self.target_modules is None:
        self.target_modules = list(DEFAULT_LORA_TARGETS)
    if not self.lora_r and self.target_modules:
        raise ValueError(f"MuNGConfig.target_modules={self.target_modules!r} names LoRA targets but lora_r is 0; "
                         "set lora_r > 0 for MuNG + LoRA.")
    self.generator_config(self.hidden_size or self._width_for_checks())  # every generator setting checked now


def _width_for_checks(self) -> int:
    """A width that passes the width rules, to check the other settings before the model fills ``hidden_size``."""
    return self.num_heads if self.kind == "cross_attn" and isinstance(self.num_heads, int) and self.num_heads > 0 else 8


def generator_config(self, hidden_size: Optional[int] = None, base_model_type: Optional[str] = None
                     ) -> NoiseGeneratorConfig:
    """The ``NoiseGeneratorConfig`` of this adapter, at ``hidden_size`` (default: the config's own). A setting that
    cannot work is refused naming the ``MuNGConfig`` field."""
    back = {new: old for old, new in RENAMED.items()}
    settings = {back.get(spec.name, spec.name): getattr(self, spec.name) for spec in self._generator_fields()}
    settings["hidden_size"] = hidden_size if hidden_size is not None else self.hidden_size
    settings["base_model_type"] = base_model_type or self.base_model_type
    try:
        return NoiseGeneratorConfig(**settings)
    except ValueError as err:
        describe = getattr(err, "describe", None)
        if describe is None:
            raise
        raise ValueError(describe(lambda name: f"MuNGConfig.{RENAMED.get(name, name)}", between="=")) from None


def lora_config(self):
    """peft's ``LoraConfig`` for the LoRA layers of this adapter (None without LoRA)."""
    if not self.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                      target_modules=self.target_modules, inference_mode=self.inference_mode)


def _generator_field_specs(cls) -> list:
    names = {RENAMED.get(spec.name, spec.name) for spec in fields(NoiseGeneratorConfig)}
    return [spec for spec in fields(cls) if spec.name in names]


MuNGConfig = make_dataclass(
    "MuNGConfig",
    _generator_fields() + _OWN_FIELDS,
    bases=(PeftConfig,),
    namespace={
        "__doc__": "A MuNG adapter (peft): the noise generator's settings (those of ``NoiseGeneratorConfig``, with "
                   "``inference_mode`` named ``noise_mode``; width and model type filled from the model) and "
                   "optional LoRA on the language model (``lora_r > 0``).",
        "__module__": __name__,
        "__post_init__": _post_init,
        "_width_for_checks": _width_for_checks,
        "_generator_fields": classmethod(_generator_field_specs),
        "generator_config": generator_config,
        "lora_config": lora_config,
    },
)
