"""``MuNGModel``: the peft tuner that puts MuNG adapters (and their optional LoRA) into a transformers VLM.

Injection: the decoder that ``get_decoder()`` returns gets a ``MuNGLayer`` child holding each adapter's generator,
and ``noise_generator.attach``'s hooks (one implementation: ``AdapterAttachment``) run the active one; with
``lora_r > 0`` the decoder's linears named by ``target_modules`` become peft LoRA layers of the same adapter.

Meanings peft leaves to each method:

- ``disable_adapter()`` / ``disable_adapter_layers()``: no noise and no LoRA, the stock model bit for bit;
- ``unload()``: the stock model back, no MuNG layer, no hook, LoRA layers unwrapped;
- ``merge_and_unload()``: noise depends on each input, so it cannot be folded into weights: LoRA is merged into
  the decoder, and the active generator is attached the project's way (``noise_generator.attach``: the model's
  ``noise_generator`` submodule and ``config.noise_generator``), so ``save_pretrained`` writes the folder every
  command of the project loads (``mung.loading.load``);
- training forward with ``num_samples`` m > 1 and labels: m forwards and the mean of their losses
  (``mean_loss_over_draws``), so a plain Trainer / TRL trains the paper's objective (task type ``CAUSAL_LM``, the
  default, routes the forward through the tuner);
- ``autocast_adapter_dtype``: generator and LoRA upcast to float32 as peft does for every method, except parameters
  DeepSpeed ZeRO-3 partitioned (peft would replace them by plain tensors; the engine owns their dtype).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, cast_adapter_dtype
from torch import nn

from ..attach import (
    _language_decoder,
    _load_into,
    _new_generator,
    attach,
    attachment_of,
    fitted_config,
    hook,
    mean_loss_over_draws,
    placeholder_ids,
    unhook,
)
from ..model import NoiseDraws, module_name_of
from .layer import GENERATOR_DICT, LAYER_NAME, AdapterAttachment, MuNGLayer


class MuNGModel(BaseTuner):
    """The peft tuner of MuNG (see the module docstring)."""

    prefix: str = "mung_"
    tuner_layer_cls = MuNGLayer
    target_module_mapping: dict = {}

    # --- checks and preparation ---------------------------------------------------------------------------------
    def _prepare_adapter_config(self, peft_config, model_config: dict):
        return peft_config  # targets are found from the model (its decoder), not from a table of model types

    def _prepare_model(self, peft_config, model: nn.Module) -> None:
        """Check the adapter fits ``model`` (placeholder token, decoder, width: errors name why), fill its width and
        model type, and put the hooks on the model once."""
        image_token_id, video_token_id = placeholder_ids(model)
        decoder = _language_decoder(model)
        attachment = attachment_of(model)
        if attachment is not None and not isinstance(attachment, AdapterAttachment):
            raise ValueError("This model already carries a noise generator attached by noise_generator.attach; "
                             "detach(model) first, or use that generator without the MuNG peft method.")
        text_width = model.config.get_text_config().hidden_size
        if peft_config.hidden_size is None:
            peft_config.hidden_size = text_width
        adapter = [name for name, config in self.peft_config.items() if config is peft_config]
        fitted = fitted_config(model, peft_config.generator_config(),
                               f"MuNGConfig of adapter {adapter[0] if adapter else '?'}")
        peft_config.base_model_type = fitted.base_model_type
        self._decoder_name = module_name_of(model, decoder)
        if attachment is None:  # the layer comes with the first generator: a tuner layer now would count as an
            # existing adapter, and peft would keep the base model trainable
            hook(AdapterAttachment(model, decoder, image_token_id, video_token_id))

    @staticmethod
    def _layer(decoder: nn.Module) -> MuNGLayer:
        layer = getattr(decoder, LAYER_NAME, None)
        if layer is None:
            layer = MuNGLayer()
            setattr(decoder, LAYER_NAME, layer)
        return layer

    def _check_target_module_exists(self, peft_config, key: str) -> bool:
        """The decoder (for the generator) and, with LoRA, the decoder's linears named by ``target_modules``."""
        if key == self._decoder_name:
            return True
        if not peft_config.lora_r or not key.startswith(self._decoder_name + "."):
            return False
        if f".{LAYER_NAME}." in key[len(self._decoder_name):] + ".":
            return False  # the generators' own q_proj / v_proj are never LoRA targets
        targets = peft_config.target_modules
        leaf = key.rsplit(".", 1)[-1]
        return leaf in ([targets] if isinstance(targets, str) else targets)

    # --- injection ----------------------------------------------------------------------------------------------
    def _create_and_replace(self, peft_config, adapter_name: str, target: nn.Module, target_name: str,
                            parent: nn.Module, current_key: str, **kwargs: Any) -> None:
        if current_key == self._decoder_name:
            self._add_generator(peft_config, adapter_name, target)
            return
        lora = peft_config.lora_config()
        if isinstance(target, LoraLayer):
            target.update_layer(adapter_name, lora.r, lora_alpha=lora.lora_alpha, config=lora)
            return
        if not isinstance(target, nn.Linear):
            raise ValueError(f"MuNGConfig.target_modules matched {current_key} ({type(target).__name__}); LoRA in a "
                             "MuNG adapter targets nn.Linear layers of the language model only.")
        new = LoraLinear(target, adapter_name, config=lora, r=lora.r, lora_alpha=lora.lora_alpha)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _add_generator(self, peft_config, adapter_name: str, decoder: nn.Module) -> None:
        model = self.model
        config = fitted_config(model, peft_config.generator_config(), f"MuNGConfig of adapter {adapter_name}")
        generator = _new_generator(config, model.get_input_embeddings().weight)
        generator.train(model.training)
        layer = self._layer(decoder)
        layer.update_layer(adapter_name, generator)
        attachment_of(model).layer = layer

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        partitioned = [p for p in self.model.parameters() if hasattr(p, "ds_id") and p.requires_grad]
        if partitioned:
            return  # peft would re-create ZeRO-3 partitioned parameters as plain (empty) tensors
        cast_adapter_dtype(self.model, adapter_name=adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # A generator is a module tree (mung_generator.<adapter>.q_proj.weight), deeper than peft's default rule
        # (the adapter name second to last) expects; saving and loading both map keys through this.
        own = f".{GENERATOR_DICT}.{adapter_name}."
        if own in key:
            return key.replace(own, f".{GENERATOR_DICT}.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    # --- running ------------------------------------------------------------------------------------------------
    def active_generator(self):
        layer = self._find_layer()
        return layer.active_generator() if layer is not None else None

    def _find_layer(self) -> Optional[MuNGLayer]:
        attachment = attachment_of(self.model)
        return attachment.layer if isinstance(attachment, AdapterAttachment) else None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        generator = self.active_generator()
        draws = NoiseDraws.for_call(generator, self.model.training, kwargs.get("noise_mode")).m
        if draws > 1 and not args and kwargs.get("labels") is not None:
            return mean_loss_over_draws(self.model, kwargs, num_draws=draws)
        return self.model(*args, **kwargs)

    # --- unloading ----------------------------------------------------------------------------------------------
    def _unload_and_optionally_merge(self, merge: bool = True, progressbar: bool = False, safe_merge: bool = False,
                                     adapter_names: Optional[list[str]] = None):
        """The generators and hooks out first, then peft's own unloading (LoRA layers merged or unwrapped, wrapped
        modules back); merging then attaches the active generator the ``attach`` way."""
        keep = self.active_generator() if merge else None
        self._remove_generators()
        model = super()._unload_and_optionally_merge(merge=merge, progressbar=progressbar, safe_merge=safe_merge,
                                                     adapter_names=adapter_names)
        if keep is not None:
            attached = attach(model, keep.config)
            _load_into(attached, keep.state_dict(), "the MuNG adapter")
        return model

    def _remove_generators(self) -> None:
        attachment = attachment_of(self.model)
        if isinstance(attachment, AdapterAttachment):
            unhook(attachment)
            delattr(attachment.decoder, LAYER_NAME)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        layer = self._find_layer()
        if layer is not None and not len(layer.mung_generator):
            self._remove_generators()

    def _unloading_checks(self, adapter_names: Optional[list[str]]) -> None:
        for module in self.model.modules():
            if isinstance(module, BaseTunerLayer) and not isinstance(module, (MuNGLayer, LoraLayer)):
                raise ValueError(f"Cannot unload: {type(module).__name__} is not a layer of a MuNG adapter.")
