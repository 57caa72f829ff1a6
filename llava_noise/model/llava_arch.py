"""LLaVA's multimodal mixins: the vision modules of the inner model, and the per-sample splice of image features
(noised by MuNG's generator) into the token embeddings.

Where the noise enters: ``add_noise_to_image_features`` of the inner model (``noise_generator.NoiseGeneratorMixin``),
called once per batch from ``prepare_inputs_labels_for_multimodal``, where every sample's image features, text
embeddings and labels are at hand.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from noise_generator import NoiseDraws, NoiseGenerator, NoiseGeneratorConfig, build_noise_generator, text_key_mask

from ..constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from .multimodal_encoder import CLIPVisionTower, build_vision_tower
from .multimodal_projector import build_vision_projector


class LlavaMetaModel:
    """Mixin for the inner model: ``vision_tower``, ``mm_projector`` and ``noise_generator`` built from the config."""

    def __init__(self, config):
        super().__init__(config)
        if getattr(config, "mm_vision_tower", None):
            self.vision_tower = build_vision_tower(config)
        if getattr(config, "mm_hidden_size", None) and getattr(config, "use_mm_proj", True):
            self.mm_projector = build_vision_projector(config)
        self.noise_generator = build_noise_generator(
            getattr(config, "noise_generator", None), config.hidden_size, "config.json noise_generator"
        )

    def get_vision_tower(self) -> Optional[CLIPVisionTower]:
        return getattr(self, "vision_tower", None)

    def initialize_vision_modules(self, model_args: Any) -> None:
        """Attach and load the vision tower, build (or reuse) the projector and load ``pretrain_mm_mlp_adapter``.

        ``model_args`` carries the training flags: vision_tower, mm_vision_select_layer, mm_vision_select_feature,
        mm_projector_type, pretrain_mm_mlp_adapter, mm_patch_merge_type.
        """
        config = self.config
        config.mm_vision_tower = model_args.vision_tower
        config.mm_vision_select_layer = model_args.mm_vision_select_layer
        config.mm_vision_select_feature = model_args.mm_vision_select_feature
        config.mm_patch_merge_type = getattr(model_args, "mm_patch_merge_type", "flat")
        tower = self.get_vision_tower()
        if tower is None or tower.vision_tower_name != model_args.vision_tower:
            tower = build_vision_tower(config)
            self.vision_tower = tower
        tower.load_model(device=self.embed_tokens.weight.device)

        config.use_mm_proj = True
        config.mm_projector_type = getattr(model_args, "mm_projector_type", "linear")
        config.mm_hidden_size = tower.hidden_size
        if getattr(self, "mm_projector", None) is None:
            self.mm_projector = build_vision_projector(config).to(self.embed_tokens.weight.device)
        for param in self.mm_projector.parameters():
            param.requires_grad = True

        adapter = getattr(model_args, "pretrain_mm_mlp_adapter", None)
        if adapter:
            from .checkpoint_io import load_projector_file

            load_projector_file(self.mm_projector, adapter)

    def initialize_noise_generator(self, ng_config: NoiseGeneratorConfig) -> NoiseGenerator:
        """Build a fresh generator from ``ng_config`` and record it in config.json."""
        if ng_config.hidden_size != self.config.hidden_size:
            raise ValueError(
                f"Noise generator hidden_size {ng_config.hidden_size} != LLM hidden size {self.config.hidden_size}."
            )
        ng_config.base_model_type = self.config.model_type
        weight = self.embed_tokens.weight
        self.noise_generator = NoiseGenerator(ng_config).to(device=weight.device)
        self.config.noise_generator = ng_config.to_dict()
        return self.noise_generator


class LlavaMetaForCausalLM:
    """Mixin for the causal-LM head: image encoding and the splice of (noised) image features into the sequence."""

    def get_model(self):
        return self.model

    def get_vision_tower(self) -> Optional[CLIPVisionTower]:
        return self.get_model().get_vision_tower()

    def noise_draws(self, noise_mode: Optional[str] = None) -> NoiseDraws:
        """Copies of each sample in this forward, one per noise draw (``num_samples`` in training, else 1)."""
        return NoiseDraws.for_call(self.get_model().noise_generator, self.training, noise_mode)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Pixel values [N, 3, H, W] → projected features [N, num_patches, hidden] in the projector's dtype."""
        features = self.get_vision_tower()(images)
        projector = self.get_model().mm_projector
        dtype = next(projector.parameters(), self.get_model().embed_tokens.weight).dtype
        return projector(features.to(dtype))

    def _split_features(
        self, ids_host: torch.Tensor, images: Optional[torch.Tensor | list[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """Per sample, its images' projected features concatenated ([n_i, d]).

        ``images`` holds, in batch order, one image per ``<image>`` placeholder, and one dummy image for a sample
        without placeholders (the original LLaVA collator's convention; its features are dropped). ``None`` is
        allowed when no sample has a placeholder (text-only inference).
        """
        counts = (ids_host == IMAGE_TOKEN_INDEX).sum(dim=1).tolist()
        if images is None:
            if any(counts):
                raise ValueError("input_ids contain <image> placeholders (-200) but no images were given.")
            weight = self.get_model().embed_tokens.weight
            return [weight.new_zeros((0, weight.shape[-1])) for _ in counts]
        if isinstance(images, (list, tuple)):
            images = torch.cat([img if img.dim() == 4 else img.unsqueeze(0) for img in images], dim=0)
        features = self.encode_images(images)
        needed = sum(max(c, 1) for c in counts)
        if features.shape[0] not in (needed, sum(counts)):
            raise ValueError(
                f"Got {features.shape[0]} images for a batch with {counts} <image> placeholders per sample; give one "
                "image per placeholder (plus one dummy image per text-only sample when training)."
            )
        with_dummies = features.shape[0] == needed
        per_sample, cursor = [], 0
        for count in counts:
            if count == 0:
                # Keep the dummy in the graph (zero-size slice) so every parameter gets a gradient.
                per_sample.append(features[cursor][0:0] if with_dummies else features.new_zeros((0, features.shape[-1])))
                cursor += 1 if with_dummies else 0
                continue
            per_sample.append(features[cursor : cursor + count].flatten(0, 1))
            cursor += count
        return per_sample

    def prepare_inputs_labels_for_multimodal(
        self,
        input_ids: torch.Tensor,
        position_ids: Optional[torch.Tensor],
        attention_mask: Optional[torch.Tensor],
        past_key_values: Any,
        labels: Optional[torch.Tensor],
        images: Optional[torch.Tensor | list[torch.Tensor]],
        image_sizes: Optional[list] = None,
        noise_mode: Optional[str] = None,
        padding_side: Optional[str] = None,
    ) -> tuple[None, torch.Tensor, torch.Tensor, Any, torch.Tensor, Optional[torch.Tensor]]:
        """Replace every ``-200`` by that image's (noised) features and re-pad.

        Returns (None, position_ids, attention_mask, past_key_values, inputs_embeds, labels) like the original.
        Position ids always follow the attention mask, so left padding works for batched generation.
        """
        model = self.get_model()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        attention_mask = attention_mask.bool()
        # Where the padding and placeholders are is planned on the host from one copy of each, taken before any
        # model work is queued: per-sample device->host reads would each wait for the vision tower and generator.
        ids_host, mask_host = input_ids.cpu(), attention_mask.cpu()
        per_sample = self._split_features(ids_host, images)

        generator = model.noise_generator
        draws = self.noise_draws(noise_mode)
        input_ids, attention_mask, ids_host, mask_host, labels = (
            draws.repeat(t) for t in (input_ids, attention_mask, ids_host, mask_host, labels)
        )
        per_sample = draws.repeat_list(per_sample)

        image_mask = input_ids == IMAGE_TOKEN_INDEX
        text_embeds = model.embed_tokens(input_ids.masked_fill(image_mask, 0))
        per_sample = [f.to(text_embeds.dtype) for f in per_sample]
        if generator is not None:
            keys = text_key_mask(
                attention_mask,
                image_mask,
                labels,
                training=self.training,
                condition_on_answer=generator.config.condition_on_answer,
            )
            per_sample = model.add_noise_to_image_features(per_sample, text_embeds, keys, noise_mode)

        max_len = getattr(self.config, "tokenizer_model_max_length", None)
        embeds_list, labels_list = [], []
        for i in range(input_ids.shape[0]):
            embeds, sample_labels = self._splice_one(
                i, ids_host[i], mask_host[i], text_embeds[i], labels[i] if labels is not None else None, per_sample[i],
                max_len,
            )
            embeds_list.append(embeds)
            labels_list.append(sample_labels)
        side = padding_side or getattr(self.config, "tokenizer_padding_side", "right")
        return self._finish(embeds_list, labels_list, side, labels is not None, past_key_values)

    def _splice_one(
        self,
        index: int,
        ids_host: torch.Tensor,
        mask_host: torch.Tensor,
        embeds: torch.Tensor,
        labels: Optional[torch.Tensor],
        features: torch.Tensor,
        max_len: Optional[int],
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One sample: drop padding, put its image features where its placeholders are, truncate to ``max_len``.
        ``ids_host`` / ``mask_host`` are the sample's ids and attention mask on the CPU."""
        keep = mask_host.nonzero().squeeze(-1)
        ids = ids_host[keep]
        positions = (ids == IMAGE_TOKEN_INDEX).nonzero().squeeze(-1).tolist()
        if keep.shape[0] < mask_host.shape[0]:  # padded: gather the kept rows (the index goes host -> device)
            keep = keep.to(embeds.device)
            embeds = embeds[keep]
            labels = labels[keep] if labels is not None else None
        n_images = len(positions)
        per_image = features.shape[0] // n_images if n_images else 0
        parts, label_parts, start = [], [], 0
        for k, pos in enumerate(positions + [ids.shape[0]]):
            parts.append(embeds[start:pos])
            if labels is not None:
                label_parts.append(labels[start:pos])
            if k < n_images:
                parts.append(features[k * per_image : (k + 1) * per_image])
                if labels is not None:
                    label_parts.append(labels.new_full((per_image,), IGNORE_INDEX))
            start = pos + 1
        if n_images == 0:
            parts.append(features)  # zero rows: keeps the generator/projector in the graph
        out = torch.cat(parts, dim=0)
        out_labels = torch.cat(label_parts, dim=0) if labels is not None else None
        if max_len is not None and out.shape[0] > max_len:
            if n_images:
                last_image_end = positions[-1] + (n_images - 1) * (per_image - 1) + per_image
                if max_len < last_image_end:
                    raise ValueError(
                        f"Sample {index} of the batch is {out.shape[0]} tokens after the image features are spliced in; "
                        f"cutting it to tokenizer_model_max_length={max_len} would split an image. Raise "
                        "--model_max_length or shorten the sample."
                    )
            out = out[:max_len]
            out_labels = out_labels[:max_len] if out_labels is not None else None
        return out, out_labels

    def _finish(self, embeds_list, labels_list, side: str, has_labels: bool, past_key_values):
        lengths = [e.shape[0] for e in embeds_list]
        longest, batch = max(lengths), len(embeds_list)
        ref = embeds_list[0]
        embeds = ref.new_zeros((batch, longest, ref.shape[-1]))
        mask = torch.zeros((batch, longest), dtype=torch.bool, device=ref.device)
        new_labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long, device=ref.device) if has_labels else None
        for i, (e, n) in enumerate(zip(embeds_list, lengths)):
            span = slice(longest - n, longest) if side == "left" else slice(0, n)
            embeds[i, span] = e
            mask[i, span] = True
            if has_labels:
                new_labels[i, span] = labels_list[i]
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return None, position_ids, mask, past_key_values, embeds, new_labels
