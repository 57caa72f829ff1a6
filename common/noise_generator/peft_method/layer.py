"""The MuNG tuner layer: each adapter's generator, held as a child of the language model's decoder.

The layer is a child, not a wrapper: wrapping the decoder would rename its weights (``base_layer.*``) and stop LoRA
from targeting the decoder's linears later (peft skips everything under a tuner layer). Its forward is never called:
the hooks of ``noise_generator.attach`` (``NoiseAttachment``: the top-level pre-hook records ``input_ids``, the 2-D
mask and ``labels``, the decoder pre-hook noises the image rows) run it, through ``AdapterAttachment``, which only
says which generator is the active one (none while adapters are disabled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ..attach import NoiseAttachment, _load_into
from ..generator import NoiseGenerator

LAYER_NAME = "mung"  # the attribute of the decoder that holds the layer
GENERATOR_DICT = "mung_generator"  # the layer's ModuleDict: adapter name -> generator


class MuNGLayer(nn.Module, BaseTunerLayer):
    """``mung_generator[adapter]``: one ``NoiseGenerator`` per MuNG adapter; at most one is active."""

    adapter_layer_names = (GENERATOR_DICT,)

    def __init__(self) -> None:
        super().__init__()
        self.mung_generator = nn.ModuleDict()
        self.merged_adapters = []
        self._gathered_keys: list[str] = []
        self.register_load_state_dict_pre_hook(self._load_partitioned)
        self.register_load_state_dict_post_hook(self._forget_gathered_keys)

    # peft loads adapters with a plain load_state_dict, which cannot copy into DeepSpeed ZeRO-3 partitioned
    # parameters (they hold no elements); a partitioned generator takes its tensors gathered here instead.
    def _load_partitioned(self, module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for name, generator in self.mung_generator.items():
            if not any(hasattr(p, "ds_id") for p in generator.parameters()):
                continue
            own = f"{prefix}{GENERATOR_DICT}.{name}."
            keys = [key for key in state_dict if key.startswith(own)]
            if keys:
                _load_into(generator, {key[len(own):]: state_dict.pop(key) for key in keys}, "the MuNG adapter")
                self._gathered_keys += keys

    def _forget_gathered_keys(self, module, incompatible_keys) -> None:
        for key in self._gathered_keys:
            if key in incompatible_keys.missing_keys:
                incompatible_keys.missing_keys.remove(key)
        self._gathered_keys = []

    def update_layer(self, adapter_name: str, generator: NoiseGenerator) -> None:
        self.mung_generator[adapter_name] = generator
        self.set_adapter(self.active_adapters)

    def active_generator(self) -> Optional[NoiseGenerator]:
        """The generator of the active adapter; None while adapters are disabled or none of them is MuNG's."""
        if self.disable_adapters:
            return None
        active = [name for name in self.active_adapters if name in self.mung_generator]
        if len(active) > 1:
            raise ValueError(f"MuNG adapters {active} are active together; one noise generator acts at a time: "
                             "set_adapter(one name).")
        return self.mung_generator[active[0]] if active else None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("MuNGLayer is run by the decoder's forward pre-hook, not called directly.")


@dataclass
class AdapterAttachment(NoiseAttachment):
    """``attach``'s hooks, with the generator taken from the MuNG layer's active adapter."""

    layer: Optional[MuNGLayer] = None

    @property
    def generator_module(self) -> Optional[nn.Module]:
        return self.layer.active_generator() if self.layer is not None else None

    def before_decoder(self, module: nn.Module, args: tuple, kwargs: dict):
        if self.generator_module is None:
            return None  # adapters disabled, or the active adapter has no generator: the stock decoder inputs
        return super().before_decoder(module, args, kwargs)
