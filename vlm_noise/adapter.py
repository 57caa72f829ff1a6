"""The generic backbone of the contract (``mung.backbones``): any transformers VLM that ``AutoModelForImageTextToText``
loads, with its ``AutoProcessor`` and chat template, and MuNG attached by ``noise_generator.attach``.

Its priority is below the LLaVA-1.5 and Qwen2.5-VL backbones, so it serves what they do not (LLaVA in the
transformers format, LLaVA-NeXT / OneVision, Qwen2-VL, Qwen3-VL, Gemma 3, PaliGemma, Idefics3, SmolVLM, InternVL,
Mistral 3, ...). A checkpoint folder is a ``save_pretrained`` of the model with its generator attached (the
generator's tensors sit beside the model's as ``noise_generator.*`` and its config in ``config.json``), or a
generator-only checkpoint over ``--model-base``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, ProcessorMixin

from mung.backbones import Backbone, EncodedPrompt, Prompt
from mung.loading import check_loading_info
from noise_generator import GENERATOR_PREFIX, NoiseGeneratorConfig, attach, attach_from_config, noise_mode

from . import grids, prompting, support

logger = logging.getLogger(__name__)
# Never quantised: the generator, the vision side and the output head stay in the loading precision.
QUANTIZATION_SKIP = ["noise_generator", "lm_head", "vision_tower", "vision_model", "visual", "multi_modal_projector",
                     "connector", "mlp1"]


class VLMBackbone(Backbone):
    name = "vlm"
    priority = -10

    def refusal(self, config: dict) -> Optional[str]:
        return support.refusal(config)

    def serves(self, config: dict) -> bool:
        return support.refusal(config) is None

    # --- loading ------------------------------------------------------------------------------------------------
    def load_weights(self, weights: str, config_source: str, generator: Optional[NoiseGeneratorConfig], options):
        config = AutoConfig.from_pretrained(config_source)
        support.warn_if_unverified(config.model_type)
        if generator is not None and hasattr(config, "noise_generator"):
            del config.noise_generator  # a generator-only checkpoint replaces the one the folder describes
        model, info = AutoModelForImageTextToText.from_pretrained(
            weights, config=config, output_loading_info=True, **options.from_pretrained_kwargs(QUANTIZATION_SKIP)
        )
        # A MuNG folder holds the generator's tensors beside the model's: the stock class calls them unexpected.
        info = dict(info, unexpected_keys=[k for k in info.get("unexpected_keys", []) if not k.startswith(GENERATOR_PREFIX)])
        missing = check_loading_info(info, weights)
        if generator is not None:
            attached, restored = attach(model, generator), False
        else:
            attached, restored = attach_from_config(model, weights)
        if attached is not None and not restored:  # the loader restores them from the checkpoint's own files
            missing += [GENERATOR_PREFIX + name for name in attached.state_dict()]
        return model, missing

    def load_processor(self, source: str, model) -> tuple[Any, Any]:
        processor = AutoProcessor.from_pretrained(source)
        if not isinstance(processor, ProcessorMixin):
            raise ValueError(f"{source} has no multimodal processor (AutoProcessor found only a "
                             f"{type(processor).__name__}); save the model's processor into the folder.")
        tokenizer = processor.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer, processor

    def check_template(self, template: Optional[str]) -> None:
        if template is not None:
            logger.warning("--conv-mode %s is ignored: transformers VLMs use the chat template of their processor.",
                           template)

    # --- prompting ----------------------------------------------------------------------------------------------
    def encode(self, loaded, prompt: Prompt) -> EncodedPrompt:
        text = prompting.render(loaded.processor, prompting.messages_of(prompt.turns), add_generation_prompt=True)
        inputs = prompting.process(loaded.processor, [text], [prompt.images])
        tensors = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        return EncodedPrompt(input_ids=inputs["input_ids"][0].tolist(), tensors=tensors, text=text,
                             images=list(prompt.images))

    def collate(self, loaded, samples: list[EncodedPrompt]) -> dict[str, Any]:
        # The processor batches its family's pixel tensors itself (padding images, grids, token types).
        batch = prompting.process(loaded.processor, [s.text for s in samples], [s.images for s in samples])
        return {key: value.to(loaded.device, loaded.dtype) if value.is_floating_point() else value.to(loaded.device)
                for key, value in batch.items()}

    def generate(self, loaded, batch: dict[str, Any], **kwargs) -> torch.Tensor:
        mode = kwargs.pop("noise_mode", None)
        stops = prompting.stop_ids(loaded.model, loaded.processor)
        with noise_mode(loaded.model, mode):
            output = loaded.model.generate(**batch, eos_token_id=stops, pad_token_id=loaded.tokenizer.pad_token_id,
                                           **kwargs)
        return output[:, batch["input_ids"].shape[1]:]

    # --- showing the noise --------------------------------------------------------------------------------------
    def image_grid(self, loaded, encoded: EncodedPrompt, image: Image.Image):
        rows, cols = grids.image_grid(loaded.model.config, encoded, loaded.processor)
        return rows, cols, None
