"""Configuration of the Multimodal Noise Generator (MuNG).

The config is stored inside a backbone's ``config.json`` (under ``noise_generator``) and beside a
generator-only checkpoint (``noise_generator_config.json``), so every checkpoint can rebuild its generator.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

KINDS = ("cross_attn", "mlp", "gaussian")
INJECTIONS = ("add", "mul")
MODES = ("sample", "mean", "off")
INITS = ("xavier", "normal", "zero")

CONFIG_NAME = "noise_generator_config.json"
# Settings that only choose what inference does: weights trained under one value serve every value.
INFERENCE_ONLY = ("inference_mode",)


class GeneratorSettingsChanged(ValueError):
    """Generator weights saved under other settings than those of the model they would go into. ``changes`` lists
    (setting, saved value, model's value); ``describe`` words it for another surface (training's flags)."""

    def __init__(self, source: str, changes: list[tuple[str, Any, Any]]):
        self.source, self.changes = source, changes
        super().__init__(self.describe(lambda name: name))

    def describe(self, name_of: Callable[[str], str], asked_by: str = "this model") -> str:
        listed = ", ".join(f"{name_of(name)} {saved!r} (saved) vs {new!r} ({asked_by})"
                           for name, saved, new in self.changes)
        return (
            f"The noise generator in {self.source} differs from the model's: {listed}. Its weights were trained under "
            "the saved values and mean something else under others; use the generator settings (--ng_* flags) of the "
            "run that wrote it."
        )


def changed_settings(saved: "NoiseGeneratorConfig", current: "NoiseGeneratorConfig") -> list[tuple[str, Any, Any]]:
    """(setting, saved value, current value) of every setting that changes the generator's shapes or what its
    weights mean (all but ``INFERENCE_ONLY``; a backbone type missing on either side is no change)."""
    changes = []
    for spec in fields(saved):
        old, new = getattr(saved, spec.name), getattr(current, spec.name)
        if spec.name in INFERENCE_ONLY or old == new:
            continue
        if spec.name == "base_model_type" and None in (old, new):
            continue
        changes.append((spec.name, old, new))
    return changes


class InvalidSetting(ValueError):
    """A ``NoiseGeneratorConfig`` value that cannot work. ``setting`` is the field, ``reason`` says why and what to do;
    it may name other fields as ``{field}`` (listed in ``refers_to``). ``describe`` words it for another surface, such
    as the command-line flags of training."""

    def __init__(self, setting: str, value: Any, reason: str, refers_to: tuple[str, ...] = ()):
        self.setting, self.value, self.reason, self.refers_to = setting, value, reason, refers_to
        super().__init__(self.describe(lambda name: f"NoiseGeneratorConfig.{name}", between="="))

    def describe(self, name_of: Callable[[str], str], between: str = " ") -> str:
        """The message with every setting named by ``name_of`` and ``between`` joining the setting to its value."""
        reason = self.reason.format(**{name: name_of(name) for name in self.refers_to})
        return f"{name_of(self.setting)}{between}{self.value!r} {reason}"


@dataclass
class NoiseGeneratorConfig:
    hidden_size: int = field(
        default=4096,
        metadata={"help": "Width of the image tokens after the projector/merger (= the LLM hidden size)."},
    )
    num_heads: int = field(default=8, metadata={"help": "Attention heads of the cross-attention generator."})
    kind: str = field(
        default="cross_attn",
        metadata={
            "help": "cross_attn: image tokens attend to the sample's text (the paper). "
            "mlp: per-image-token MLP that ignores the text (ablation). "
            "gaussian: no parameters, plain N(0, gaussian_std^2) noise (ablation)."
        },
    )
    injection: str = field(
        default="add", metadata={"help": "add: X_V + noise (the paper). mul: X_V * noise (ablation)."}
    )
    sample_noise: bool = field(
        default=True,
        metadata={"help": "False injects mu without sampling (the paper's 'cross-attention only' ablation)."},
    )
    num_samples: int = field(
        default=1, metadata={"help": "m: noise draws per training example; the loss is averaged over them."}
    )
    inference_mode: str = field(
        default="sample",
        metadata={"help": "Noise at inference: sample (as the paper), mean (deterministic mu), off (base model)."},
    )
    condition_on_answer: bool = field(
        default=True,
        metadata={"help": "During training the answer tokens are keys/values too (the paper). False: prompt only."},
    )
    log_sigma_min: float = field(default=-10.0, metadata={"help": "Lower clamp of log sigma."})
    log_sigma_max: float = field(default=2.0, metadata={"help": "Upper clamp of log sigma (keeps exp finite in fp16)."})
    gaussian_std: float = field(default=0.1, metadata={"help": "Standard deviation for kind='gaussian'."})
    init: str = field(
        default="xavier",
        metadata={
            "help": "xavier: xavier-uniform weights, zero biases (what the authors' module asks for, but their "
            "runs never got it: transformers <= 4.51 skips it under from_pretrained). normal: N(0, init_std^2) "
            "weights, zero biases, which reproduces the authors' effective init. zero: xavier, then mu head zero "
            "and log sigma at log_sigma_min, so training starts from the unchanged base model."
        },
    )
    init_std: float = field(
        default=0.02,
        metadata={
            "help": "Weight std of init='normal'. 0.02 is Qwen2.5-VL's (and Llama's) initializer_range, which the "
            "authors' generator started from; kept here, not read from the backbone, so it is stored with the "
            "generator."
        },
    )
    noise_video: bool = field(
        default=False,
        metadata={
            "help": "Generic attach (noise_generator.attach, any transformers VLM): noise the video placeholder rows "
            "too, not only the image rows. The paper noises images only. The LLaVA-1.5 / Qwen2.5-VL backbones "
            "noise images only and refuse True."
        },
    )
    noise_deepstack: bool = field(
        default=False,
        metadata={
            "help": "Generic attach on models with deepstack visual features (Qwen3-VL): add the same noise to the "
            "deepstack copies of the image tokens as well. Off by default: those copies are added to the hidden "
            "states of the first decoder layers, which already carry the noised input, so True adds the noise "
            "once more per deepstack layer."
        },
    )
    base_model_type: Optional[str] = field(
        default=None,
        metadata={"help": "model_type of the backbone this generator was trained on (set by the backbone)."},
    )

    def __post_init__(self) -> None:
        self.validate()

    def check_types(self) -> None:
        """Each setting has its field's type (a bool is not a number here, a number not a bool, a float is finite):
        a value read from a hand-edited file as ``"8"`` or ``"false"`` is refused naming the setting."""
        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
            kind = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
            if value is None and optional:
                continue
            fits = {
                int: isinstance(value, int) and not isinstance(value, bool),
                float: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                bool: isinstance(value, bool),
                str: isinstance(value, str),
            }[kind]
            if not fits:
                wanted = {int: "an int", float: "a finite number", bool: "true or false", str: "a string"}[kind]
                quoted = " (write it without quotes)" if isinstance(value, str) and kind is not str else ""
                raise InvalidSetting(name, value, f"must be {wanted}, not {type(value).__name__}{quoted}.")

    def validate(self) -> None:
        self.check_types()
        for name, allowed in (("kind", KINDS), ("injection", INJECTIONS), ("inference_mode", MODES), ("init", INITS)):
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidSetting(name, value, f"is not supported; choose one of {', '.join(allowed)}.")
        if not isinstance(self.hidden_size, int) or self.hidden_size <= 0:
            raise InvalidSetting("hidden_size", self.hidden_size, "must be a positive int.")
        if self.kind == "cross_attn" and (not isinstance(self.num_heads, int) or self.num_heads < 1):
            raise InvalidSetting("num_heads", self.num_heads, "must be an int >= 1 for kind cross_attn.")
        if self.kind == "cross_attn" and self.hidden_size % self.num_heads:
            raise InvalidSetting(
                "num_heads", self.num_heads, f"does not fit: {{hidden_size}} {self.hidden_size} is not divisible by "
                "it; pick a head count that divides the hidden size.", refers_to=("hidden_size",)
            )
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise InvalidSetting("num_samples", self.num_samples, "must be an int >= 1.")
        if self.log_sigma_min >= self.log_sigma_max:
            raise InvalidSetting(
                "log_sigma_min", self.log_sigma_min, f"must be below {{log_sigma_max}} ({self.log_sigma_max}).",
                refers_to=("log_sigma_max",),
            )
        if not self.init_std > 0:
            raise InvalidSetting("init_std", self.init_std, "must be > 0.")
        if self.gaussian_std < 0:
            raise InvalidSetting("gaussian_std", self.gaussian_std, "must be >= 0.")

    # --- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "a dict") -> "NoiseGeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown noise generator setting(s) {unknown} in {source}; known settings: {sorted(known)}. "
                "Was it written by a newer MuNG version?"
            )
        try:
            return cls(**data)
        except InvalidSetting as err:
            setting = err.describe(lambda name: f'"{name}"', between=": ")
            raise ValueError(f"{source}: {setting} Fix it there.") from None

    def to_json_file(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "NoiseGeneratorConfig":
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"No noise generator config at {path}.") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}).") from None
        return cls.from_dict(data, source=str(path))
