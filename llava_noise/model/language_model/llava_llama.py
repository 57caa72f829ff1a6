"""LLaVA-1.5 on Llama: ``LlavaLlamaModel`` (Llama + vision tower + projector + noise generator) and
``LlavaLlamaForCausalLM`` (the LM head, the multimodal forward and ``generate``)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from noise_generator import NoiseGeneratorMixin

from ..configuration_llava import LlavaConfig
from ..llava_arch import LlavaMetaForCausalLM, LlavaMetaModel


class LlavaPreTrainedModel(NoiseGeneratorMixin, LlamaPreTrainedModel):
    """Llama's pretrained base with the generator's own initialisation (``NoiseGeneratorMixin``)."""

    config_class = LlavaConfig
    # The tower's weights are read from mm_vision_tower by ``load_model()``; copies inside a checkpoint are skipped.
    _keys_to_ignore_on_load_unexpected = [r"model\.vision_tower\..*"]


class LlavaLlamaModel(LlavaMetaModel, LlavaPreTrainedModel, LlamaModel):
    config_class = LlavaConfig
    _keys_to_ignore_on_load_unexpected = [r"vision_tower\..*"]

    def __init__(self, config: LlavaConfig):
        super().__init__(config)


class LlavaLlamaForCausalLM(LlavaPreTrainedModel, LlamaForCausalLM, LlavaMetaForCausalLM):
    config_class = LlavaConfig

    def __init__(self, config: LlavaConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = LlavaLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = torch.nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Any = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        images: Optional[torch.FloatTensor] = None,
        image_sizes: Optional[list] = None,
        noise_mode: Optional[str] = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Llama's forward; ``input_ids`` may hold ``-200`` placeholders that ``images`` fill (noised by the
        generator in ``noise_mode``: None = sample in training, config's inference_mode otherwise)."""
        # Placeholders only appear in a prompt: decoding steps (a cache is present) skip the host-syncing scan.
        prompt_has_placeholders = (
            input_ids is not None and past_key_values is None and bool((input_ids < 0).any())
        )
        if inputs_embeds is None and input_ids is not None and (images is not None or prompt_has_placeholders):
            (input_ids, position_ids, attention_mask, past_key_values, inputs_embeds, labels) = (
                self.prepare_inputs_labels_for_multimodal(
                    input_ids, position_ids, attention_mask, past_key_values, labels, images, image_sizes, noise_mode
                )
            )
            # The splice repeated the batch once per noise draw; so were its answer tokens.
            kwargs = self.noise_draws(noise_mode).loss_kwargs(kwargs)
        return LlamaForCausalLM.forward(
            self,
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        inputs: Optional[torch.Tensor] = None,
        images: Optional[torch.Tensor] = None,
        image_sizes: Optional[list] = None,
        noise_mode: Optional[str] = None,
        **kwargs,
    ):
        """Build the (noised) embeddings once at prefill, then decode with Llama's ``generate`` (new tokens only).

        Prompts are left-padded after the splice; positions follow the attention mask.
        """
        if "inputs_embeds" in kwargs:
            raise ValueError("Pass input_ids (with -200 image placeholders) and images, not inputs_embeds.")
        attention_mask = kwargs.pop("attention_mask", None)
        position_ids = kwargs.pop("position_ids", None)
        if inputs is None:
            inputs = kwargs.pop("input_ids", None)
        if inputs is None:
            raise ValueError("generate() needs input_ids.")
        _, _, attention_mask, _, inputs_embeds, _ = self.prepare_inputs_labels_for_multimodal(
            inputs, position_ids, attention_mask, None, None, images, image_sizes, noise_mode, padding_side="left"
        )
        return super().generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask.long(), **kwargs)


AutoConfig.register("llava_noise", LlavaConfig)
AutoModelForCausalLM.register(LlavaConfig, LlavaLlamaForCausalLM)
