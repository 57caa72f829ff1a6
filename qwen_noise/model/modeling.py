"""Qwen2.5-VL with MuNG's noise generator on the vision merger's output.

The stock model embeds the prompt, encodes each image with the vision tower + merger, scatters the merger output
into the ``<|image_pad|>`` positions and runs the language model. Here the merger output of every sample is first
passed through the noise generator (queries: that sample's image tokens; keys/values: that sample's text token
embeddings), through [`NoiseGeneratorMixin.add_noise_to_image_rows`] (the generator's padded, sync-free call)
from `Qwen2_5_VLNoiseModel.noised_inputs`. The noised features are handed to the stock forward as precomputed
encoder outputs, so everything else (placeholder scatter, 3-D rope, caching) is the stock code; that code reads the
placeholder count and the image grids on the host, our part reads nothing.

Noise enters in the training forward and at generation prefill (the only step that sees images); decoding steps
and text-only inference run the stock model unchanged.
"""


from typing import Optional

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast, BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLModel,
    Qwen2_5_VLPreTrainedModel,
    Qwen2_5_VLTextModel,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple

from noise_generator import (
    NoiseDraws,
    NoiseGenerator,
    NoiseGeneratorMixin,
    build_noise_generator,
    mask_positions,
    rows_at_mask,
    text_key_mask,
)

from .configuration import Qwen2_5_VLNoiseConfig


class Qwen2_5_VLNoisePreTrainedModel(NoiseGeneratorMixin, Qwen2_5_VLPreTrainedModel):
    """The stock pretrained base with the generator's own initialisation and noise entry point
    (``NoiseGeneratorMixin``)."""

    config: Qwen2_5_VLNoiseConfig


class Qwen2_5_VLNoiseModel(Qwen2_5_VLNoisePreTrainedModel, Qwen2_5_VLModel):
    """`Qwen2_5_VLModel` with ``noise_generator`` applied to each sample's merger outputs before the scatter."""

    def __init__(self, config: Qwen2_5_VLNoiseConfig):
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
        self.language_model = Qwen2_5_VLTextModel._from_config(config.text_config)
        self.rope_deltas = None  # cached by the stock code for incremental decoding
        self.noise_generator = build_noise_generator(config.noise_generator, config.text_config.hidden_size)
        self.post_init()

    def noise_draws(self, noise_mode: Optional[str] = None) -> NoiseDraws:
        """Copies of each sample in this forward, one per noise draw (``num_samples`` in training, else 1)."""
        return NoiseDraws.for_call(self.noise_generator, self.training, noise_mode)

    def blank_image_features(self, inputs_embeds: torch.Tensor) -> BaseModelOutputWithPooling:
        """Zero rows of the merger output for a blank minimal image (one merged token), kept in the autograd graph.

        A training batch without images runs the vision tower and merger on it, as LLaVA's collator does with its
        dummy image, and uses none of its features (they enter with zero weight).
        """
        vision = self.config.vision_config
        side = vision.spatial_merge_size
        device = inputs_embeds.device
        patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        pixels = torch.zeros(side * side, patch_dim, device=device)
        grid = torch.tensor([[1, side, side]], device=device)
        features = self.get_image_features(pixels, grid, return_dict=True).pooler_output
        return BaseModelOutputWithPooling(pooler_output=(torch.cat(features, dim=0)[0:0],))

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        pixel_values: Optional[torch.Tensor] = None,
        pixel_values_videos: Optional[torch.Tensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        mm_token_type_ids: Optional[torch.IntTensor] = None,
        second_per_grid_ts: Optional[torch.Tensor] = None,
        mm_encoder_outputs: Optional[dict[str, BaseModelOutputWithPooling]] = None,
        labels: Optional[torch.LongTensor] = None,
        noise_mode: Optional[str] = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Only used to tell the generator where the answer is: a key only in training with `condition_on_answer`.
        noise_mode (`str`, *optional*):
            `sample`, `mean` or `off` for this call; default: sampling in training, the config's
            `inference_mode` otherwise.
        """
        encoded = (mm_encoder_outputs or {}).get("image")
        if self.training and pixel_values is None and pixel_values_videos is None and encoded is None:
            # Every data-parallel rank must run the same modules in the same order: ZeRO-3 gathers each module's
            # parameters collectively, so a rank that skipped the vision tower on a text-only batch would hang its
            # peers. Embed first, then encode, as the stock forward does with images.
            if inputs_embeds is None:
                inputs_embeds = self.get_input_embeddings()(input_ids)
            mm_encoder_outputs = {**(mm_encoder_outputs or {}), "image": self.blank_image_features(inputs_embeds)}
        stock_inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            second_per_grid_ts=second_per_grid_ts,
            mm_encoder_outputs=mm_encoder_outputs,
        )
        encoded_images = (mm_encoder_outputs or {}).get("image")
        has_images = pixel_values is not None or encoded_images is not None
        # Text-only training batches still run the generator (on zero image tokens), so every data-parallel
        # rank runs the same operations; text-only inference and decoding steps are the stock model.
        if (
            self.noise_generator is None
            or self.noise_generator.resolve_mode(noise_mode) == "off"
            or not (has_images or self.training)
        ):
            return super().forward(**stock_inputs, **kwargs)
        if pixel_values is not None and encoded_images is not None:
            raise ValueError("Pass either pixel_values or mm_encoder_outputs['image'], not both.")
        if attention_mask is not None and not (isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2):
            raise ValueError(
                "The noise generator needs a 2-D attention mask (1 = token, 0 = padding) to keep padding out of its "
                "keys; got a prepared mask. Use a dynamic cache for generation."
            )

        return super().forward(**self.noised_inputs(stock_inputs, labels, noise_mode, kwargs), **kwargs)

    def noised_inputs(self, stock: dict, labels: Optional[torch.Tensor], noise_mode: Optional[str], kwargs: dict) -> dict:
        """The stock forward's inputs with every sample's merger outputs noised (handed over as precomputed encoder
        outputs) and, for m > 1 noise draws, the batch repeated m times with its 3-D rope positions."""
        if stock["inputs_embeds"] is None:
            stock["inputs_embeds"] = self.get_input_embeddings()(stock["input_ids"])
        embeds = stock["inputs_embeds"]
        encoded = (stock["mm_encoder_outputs"] or {}).get("image")
        if encoded is None and stock["pixel_values"] is not None:
            encoded = self.get_image_features(stock["pixel_values"], stock["image_grid_thw"], return_dict=True, **kwargs)
        image_features = (torch.cat(encoded.pooler_output, dim=0).to(embeds.device, embeds.dtype) if encoded is not None
                          else embeds.new_zeros(0, embeds.shape[-1]))
        image_mask, video_mask = self.get_placeholder_mask(stock["input_ids"], inputs_embeds=embeds)
        image_mask, video_mask = image_mask[..., 0], video_mask[..., 0]

        draws = self.noise_draws(noise_mode)
        if draws.m > 1 and stock["position_ids"] is None:  # 3-D rope positions of the batch, repeated with it below
            keys = ("input_ids", "image_grid_thw", "video_grid_thw", "second_per_grid_ts", "inputs_embeds",
                    "attention_mask", "past_key_values", "mm_token_type_ids")
            stock["position_ids"] = self.compute_3d_position_ids(**{key: stock[key] for key in keys})
        for key in ("input_ids", "attention_mask", "inputs_embeds", "mm_token_type_ids"):
            stock[key] = draws.repeat(stock[key])
        if stock["position_ids"] is not None:  # [B, T] or [3 or 4, B, T]
            stock["position_ids"] = draws.repeat(stock["position_ids"], dim=0 if stock["position_ids"].dim() == 2 else 1)
        key_mask = text_key_mask(
            stock["attention_mask"],
            draws.repeat(image_mask | video_mask),
            draws.repeat(labels),
            training=self.training,
            condition_on_answer=self.noise_generator.config.condition_on_answer,
        )
        noised = self.noised_image_features(image_features, image_mask, stock["inputs_embeds"], key_mask, draws,
                                            noise_mode)
        image_output = BaseModelOutputWithPooling(pooler_output=(noised,))
        return {**stock, "pixel_values": None,
                "mm_encoder_outputs": {**(stock["mm_encoder_outputs"] or {}), "image": image_output}}

    def noised_image_features(self, image_features: torch.Tensor, image_mask: torch.Tensor, embeds: torch.Tensor,
                              key_mask: torch.Tensor, draws: NoiseDraws, noise_mode: Optional[str]) -> torch.Tensor:
        """The merger's ``[N, d]`` rows (placeholder order of ``image_mask`` ``[B, T]``), noised, for the batch repeated
        once per draw (``[N * m, d]``, sample-major). The rows go to their placeholder rows of a padded ``[B, T, d]``
        batch and come back in the same order by index arithmetic on the device: no host read of the mask, no shape
        that depends on it. (The stock forward checks the placeholder count against the features afterwards.)"""
        image_rows = draws.repeat(image_mask)
        padded = draws.repeat(rows_at_mask(image_features, image_mask))
        noised = self.add_noise_to_image_rows(padded, image_rows, embeds, key_mask, noise_mode)
        positions = mask_positions(image_rows, image_features.shape[0] * draws.m)
        return noised.reshape(-1, noised.shape[-1]).index_select(0, positions)


class Qwen2_5_VLNoiseForConditionalGeneration(Qwen2_5_VLNoisePreTrainedModel, Qwen2_5_VLForConditionalGeneration):
    """`Qwen2_5_VLForConditionalGeneration` whose inner model noises the image tokens (see `Qwen2_5_VLNoiseModel`)."""

    def __init__(self, config: Qwen2_5_VLNoiseConfig):
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.model = Qwen2_5_VLNoiseModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @property
    def noise_generator(self) -> Optional[NoiseGenerator]:
        return self.model.noise_generator

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        pixel_values: Optional[torch.Tensor] = None,
        pixel_values_videos: Optional[torch.Tensor] = None,
        image_grid_thw: Optional[torch.LongTensor] = None,
        video_grid_thw: Optional[torch.LongTensor] = None,
        mm_token_type_ids: Optional[torch.IntTensor] = None,
        second_per_grid_ts: Optional[torch.Tensor] = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: Optional[dict[str, BaseModelOutputWithPooling]] = None,
        noise_mode: Optional[str] = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        noise_mode (`str`, *optional*):
            `sample`, `mean` or `off` for this call; default: sampling in training, the config's
            `inference_mode` otherwise. With `num_samples = m > 1` in training the batch is repeated m times
            inside the model, so the mean loss averages m noise draws per sample; a `num_items_in_batch` given
            for the batch as passed in is scaled with it.
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            second_per_grid_ts=second_per_grid_ts,
            mm_encoder_outputs=mm_encoder_outputs,
            labels=labels,
            noise_mode=noise_mode,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs[0], logits_to_keep)
        logits = self.lm_head(hidden_states)

        loss = None
        if labels is not None:
            # The inner model repeated the batch once per noise draw: so are the labels and their count.
            draws = self.model.noise_draws(noise_mode)
            labels, kwargs = draws.repeat(labels), draws.loss_kwargs(kwargs)
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = ["Qwen2_5_VLNoiseForConditionalGeneration", "Qwen2_5_VLNoiseModel", "Qwen2_5_VLNoisePreTrainedModel"]
