"""Qwen2.5-VL's side of the backbone contract (``mung.backbones``): how the shared loader, answering, chat and
visualisation drive ``Qwen2_5_VLNoiseForConditionalGeneration``.

Prompts are rendered by ``qwen_noise.data.prompting`` (Qwen's chat template, the same rendering training uses);
images are resized by qwen-vl-utils within ``--min-pixels`` / ``--max-pixels``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from PIL import Image
from transformers import AutoProcessor, ProcessorMixin

from mung.backbones import Backbone, EncodedPrompt, Prompt
from mung.loading import check_loading_info
from noise_generator import NoiseGeneratorConfig

from .inference_flags import add_inference_args as add_qwen_inference_args
from .comparison import COMPARISON
from .data.prompting import encode_images, tokenize_conversation
from .model.builder import QUANTIZATION_SKIP, noise_config
from .model.modeling import Qwen2_5_VLNoiseForConditionalGeneration

logger = logging.getLogger(__name__)
MODEL_TYPES = ("qwen2_5_vl", "qwen2_5_vl_noise")
TEMPLATE = "qwen2_5_vl"


class QwenBackbone(Backbone):
    name = "qwen"
    comparison = COMPARISON

    def serves(self, config: dict) -> bool:
        return config.get("model_type") in MODEL_TYPES

    # --- loading ------------------------------------------------------------------------------------------------
    def load_weights(self, weights: str, config_source: str, generator: Optional[NoiseGeneratorConfig], options):
        config = noise_config(config_source, generator)
        model, info = Qwen2_5_VLNoiseForConditionalGeneration.from_pretrained(
            weights, config=config, output_loading_info=True, **options.from_pretrained_kwargs(QUANTIZATION_SKIP)
        )
        return model, check_loading_info(info, weights)

    def load_processor(self, source: str, model) -> tuple[Any, Any]:
        processor = AutoProcessor.from_pretrained(source)
        if not isinstance(processor, ProcessorMixin):
            raise ValueError(f"{source} has no Qwen2.5-VL processor (only a tokenizer was found).")
        return processor.tokenizer, processor

    def add_inference_args(self, parser) -> None:
        add_qwen_inference_args(parser)

    def configure(self, loaded, args) -> None:
        loaded.extra["pixels"] = {"min": getattr(args, "min_pixels", None), "max": getattr(args, "max_pixels", None)}

    def check_template(self, template: Optional[str]) -> None:
        if template not in (None, TEMPLATE):
            logger.warning("--conv-mode %s is a LLaVA template; Qwen2.5-VL always uses its own chat template.", template)

    # --- prompting ----------------------------------------------------------------------------------------------
    def encode(self, loaded, prompt: Prompt) -> EncodedPrompt:
        pixels = loaded.extra.get("pixels", {})
        pixel_values, grid = encode_images(loaded.processor, prompt.images, pixels.get("min"), pixels.get("max"))
        merge = loaded.processor.image_processor.merge_size
        counts = [] if grid is None else (grid.prod(-1) // merge**2).tolist()
        ids, _, types = tokenize_conversation(prompt.turns, counts, loaded.tokenizer, add_generation_prompt=True)
        tensors = {"mm_token_type_ids": torch.tensor(types, dtype=torch.int)}
        if pixel_values is not None:
            tensors.update(pixel_values=pixel_values, image_grid_thw=grid)
        return EncodedPrompt(input_ids=ids, tensors=tensors, text=loaded.tokenizer.decode(ids))

    def collate(self, loaded, samples: list[EncodedPrompt]) -> dict[str, Any]:
        longest = max(len(s.input_ids) for s in samples)
        pad = loaded.tokenizer.pad_token_id
        ids = torch.full((len(samples), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(samples), longest), dtype=torch.long)
        types = torch.zeros((len(samples), longest), dtype=torch.int)
        for row, sample in enumerate(samples):
            n = len(sample.input_ids)
            ids[row, longest - n:] = torch.tensor(sample.input_ids, dtype=torch.long)
            mask[row, longest - n:] = 1
            types[row, longest - n:] = sample.tensors["mm_token_type_ids"]
        batch = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types}
        with_images = [s for s in samples if "pixel_values" in s.tensors]
        if with_images:
            batch["pixel_values"] = torch.cat([s.tensors["pixel_values"] for s in with_images]).to(dtype=loaded.dtype)
            batch["image_grid_thw"] = torch.cat([s.tensors["image_grid_thw"] for s in with_images])
        return {key: value.to(loaded.device) for key, value in batch.items()}

    def generate(self, loaded, batch: dict[str, Any], **kwargs) -> torch.Tensor:
        tokenizer = loaded.tokenizer
        output = loaded.model.generate(**batch, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                       pad_token_id=tokenizer.pad_token_id, **kwargs)
        return output[:, batch["input_ids"].shape[1]:]

    # --- showing the noise --------------------------------------------------------------------------------------
    def image_grid(self, loaded, encoded: EncodedPrompt, image: Image.Image):
        _, rows, cols = encoded.tensors["image_grid_thw"][0].tolist()
        merge = loaded.processor.image_processor.merge_size
        return rows // merge, cols // merge, None
