"""Qwen2.5-VL with MuNG's noise generator on the vision merger's output.

The stock model embeds the prompt, encodes each image with the vision tower + merger, scatters the merger output
into the ``<|image_pad|>`` positions and runs the language model. Here the merger output of every sample is first
passed through the noise generator (queries: that sample's image tokens; keys/values: that sample's text token
embeddings), see [`Qwen2_5_VLNoiseModel.add_noise_to_image_features`]. The noised features are handed to the stock
forward as precomputed encoder outputs, so everything else (placeholder scatter, 3-D rope, caching) is the stock code.

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
    NoiseGenerator,
    NoiseGeneratorConfig,
    noise_draws,
    repeat_for_noise_samples,
    scale_num_items,
    text_key_mask,
)

from .configuration import Qwen2_5_VLNoiseConfig


class Qwen2_5_VLNoisePreTrainedModel(Qwen2_5_VLPreTrainedModel):
    """Owns weight initialisation: the stock rules, plus the noise generator's own ``reset_parameters``."""

    config: Qwen2_5_VLNoiseConfig

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # transformers treats a module of custom code without direct parameters (the generator keeps its
        # tensors in child Linears) as initialised and would leave the generator with the generic Linear init.
        # Run the generator's own init after its children; loaded tensors stay untouched (init guard).
        if isinstance(module, NoiseGenerator) and not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, NoiseGenerator):
            # transformers runs this under its init guard (loaded tensors are left alone) and, under ZeRO-3,
            # inside GatheredParameters for the tensors it initialises.
            module.reset_parameters()
        else:
            super()._init_weights(module)


def build_noise_generator(config: Qwen2_5_VLNoiseConfig) -> Optional[NoiseGenerator]:
    """The generator described by ``config.noise_generator`` (None when the config has none)."""
    if config.noise_generator is None:
        return None
    generator_config = NoiseGeneratorConfig.from_dict(dict(config.noise_generator), source="config.noise_generator")
    if generator_config.hidden_size != config.text_config.hidden_size:
        raise ValueError(
            f"config.noise_generator.hidden_size={generator_config.hidden_size} differs from the language model's "
            f"hidden size {config.text_config.hidden_size}; build the generator config for this model."
        )
    return NoiseGenerator(generator_config)


class Qwen2_5_VLNoiseModel(Qwen2_5_VLNoisePreTrainedModel, Qwen2_5_VLModel):
    """`Qwen2_5_VLModel` with ``noise_generator`` applied to each sample's merger outputs before the scatter."""

    def __init__(self, config: Qwen2_5_VLNoiseConfig):
        Qwen2_5_VLPreTrainedModel.__init__(self, config)
        self.visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
        self.language_model = Qwen2_5_VLTextModel._from_config(config.text_config)
        self.rope_deltas = None  # cached by the stock code for incremental decoding
        self.noise_generator = build_noise_generator(config)
        self.post_init()

    def noise_repeats(self, noise_mode: Optional[str] = None) -> int:
        """How many times each training sample is repeated so that it draws ``num_samples`` noises (1 otherwise)."""
        return noise_draws(self.noise_generator, self.training, noise_mode)

    def add_noise_to_image_features(
        self,
        image_features: torch.Tensor,
        inputs_embeds: torch.Tensor,
        image_mask: torch.Tensor,
        key_mask: torch.Tensor,
        repeats: int = 1,
        noise_mode: Optional[str] = None,
    ) -> torch.Tensor:
        """Noise the merger outputs of every sample; this is where MuNG enters the model.

        Args:
            image_features: ``[N, d]`` merger outputs of all images of the batch, in placeholder order.
            inputs_embeds: ``[B * repeats, T, d]`` text token embeddings (keys/values of the generator).
            image_mask: ``[B, T]`` bool, True at ``<|image_pad|>`` positions of the (unrepeated) batch.
            key_mask: ``[B * repeats, T]`` bool, the text positions the generator may attend to.
            repeats: copies of each sample (``num_samples`` in training), each with its own noise draw.
            noise_mode: ``sample`` | ``mean`` | ``off``; None = the generator's default for train/eval.

        Returns:
            ``[N * repeats, d]`` noised features in the placeholder order of the repeated batch.
        """
        # Image i belongs to the row holding its placeholders: split by placeholder count per row (one host sync,
        # as the stock code does to split features per image).
        tokens_per_row = image_mask.sum(dim=-1).tolist()
        if sum(tokens_per_row) != image_features.shape[0]:
            raise ValueError(
                f"The batch has {sum(tokens_per_row)} image placeholder tokens but the vision merger produced "
                f"{image_features.shape[0]} image features; check that every image has its <|image_pad|> tokens."
            )
        per_sample = [chunk for chunk in image_features.split(tokens_per_row) for _ in range(repeats)]
        output = self.noise_generator(per_sample, inputs_embeds, key_mask, mode=noise_mode)
        return torch.cat(output.image_embeds, dim=0)

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

        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if has_images:
            if encoded_images is None:
                encoded_images = self.get_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs)
            image_features = torch.cat(encoded_images.pooler_output, dim=0).to(inputs_embeds.device, inputs_embeds.dtype)
        else:
            image_features = inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])
        image_mask, video_mask = self.get_placeholder_mask(input_ids, inputs_embeds=inputs_embeds)
        image_mask, video_mask = image_mask[..., 0], video_mask[..., 0]

        repeats = self.noise_repeats(noise_mode)
        if repeats > 1 and position_ids is None:
            # 3-D rope positions of the original batch, repeated with it below.
            position_ids = self.compute_3d_position_ids(
                input_ids=input_ids,
                image_grid_thw=image_grid_thw,
                video_grid_thw=video_grid_thw,
                second_per_grid_ts=second_per_grid_ts,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                past_key_values=past_key_values,
                mm_token_type_ids=mm_token_type_ids,
            )
        if repeats > 1:
            input_ids, attention_mask, inputs_embeds, mm_token_type_ids, labels = (
                repeat_for_noise_samples(t, repeats)
                for t in (input_ids, attention_mask, inputs_embeds, mm_token_type_ids, labels)
            )
            if position_ids is not None:  # [B, T] or [3 or 4, B, T]
                position_ids = position_ids.repeat_interleave(repeats, dim=0 if position_ids.dim() == 2 else 1)

        key_mask = text_key_mask(
            attention_mask,
            repeat_for_noise_samples(image_mask | video_mask, repeats),
            labels,
            training=self.training,
            condition_on_answer=self.noise_generator.config.condition_on_answer,
        )
        noised = self.add_noise_to_image_features(
            image_features, inputs_embeds, image_mask, key_mask, repeats=repeats, noise_mode=noise_mode
        )
        stock_inputs.update(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            mm_token_type_ids=mm_token_type_ids,
            pixel_values=None,
            mm_encoder_outputs={
                **(mm_encoder_outputs or {}),
                "image": BaseModelOutputWithPooling(pooler_output=(noised,)),
            },
        )
        return super().forward(**stock_inputs, **kwargs)


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
            repeats = self.model.noise_repeats(noise_mode)
            labels = repeat_for_noise_samples(labels, repeats)
            if "num_items_in_batch" in kwargs:
                kwargs = {**kwargs, "num_items_in_batch": scale_num_items(kwargs["num_items_in_batch"], repeats)}
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
