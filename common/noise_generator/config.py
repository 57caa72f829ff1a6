"""Configuration of the Multimodal Noise Generator (MuNG).

The config is stored inside a backbone's ``config.json`` (under ``noise_generator``) and beside a
generator-only checkpoint (``noise_generator_config.json``), so every checkpoint can rebuild its generator.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

KINDS = ("cross_attn", "mlp", "gaussian")
INJECTIONS = ("add", "mul")
MODES = ("sample", "mean", "off")
INITS = ("xavier", "normal", "zero")

CONFIG_NAME = "noise_generator_config.json"


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

    def validate(self) -> None:
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
        return cls(**data)

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
