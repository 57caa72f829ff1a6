"""LLaVA-1.5's side of the backbone contract (``mung.backbones``): how the shared loader, answering, chat and
visualisation drive ``LlavaLlamaForCausalLM``.

Prompts are rendered with LLaVA's conversation templates (``--conv-mode``, else the template the checkpoint was
trained with), ``<image>`` becomes the ``-200`` placeholder the model splices image features into, and images are
padded to squares with the processor's mean colour when the checkpoint says ``image_aspect_ratio: pad``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image
from transformers import AutoTokenizer

from mung.backbones import IMAGE_PLACEHOLDER, Backbone, EncodedPrompt, Prompt
from mung.loading import check_loading_info
from noise_generator import NoiseGeneratorConfig, check_generator_fits

from .comparison import COMPARISON
from .constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_PATCH_TOKEN, IMAGE_TOKEN_INDEX
from .conversation import SeparatorStyle, conv_templates, get_conv_template
from .mm_utils import process_images, tokenizer_image_token
from .model import LlavaConfig, LlavaLlamaForCausalLM
from .model.builder import LLAVA_MODEL_TYPES, load_llava_config
from .model.checkpoint_io import load_projector_file

# Never quantised: the projector and generator train in full precision, the tower is loaded on its own.
QUANTIZATION_SKIP = ["mm_projector", "noise_generator", "vision_tower", "lm_head"]


def image_token(mm_use_im_start_end: bool) -> str:
    """The text that stands for one image in a message."""
    if mm_use_im_start_end:
        return DEFAULT_IM_START_TOKEN + "<image>" + DEFAULT_IM_END_TOKEN
    return "<image>"


def stop_string(conv) -> Optional[str]:
    """The text that ends an assistant turn in this template (None when the template has none)."""
    if conv.sep_style in (SeparatorStyle.TWO, SeparatorStyle.LLAMA_2):
        return conv.sep2 or None
    return conv.sep or None  # plain: the "\n" that ends a caption


def infer_conv_mode(model: Any, tokenizer: Any) -> str:
    """The conversation template a checkpoint was trained with, from its config and tokenizer (never its folder).

    Order: a template name recorded in the config (``conv_mode`` or the training ``version``); ChatML markers in
    the tokenizer → chatml_direct; a Llama-2 ``[INST]`` chat template in the tokenizer → llava_llama_2; otherwise
    vicuna_v1 (LLaVA-1.5's ``--version v1``).
    """
    config = model.config
    for key in ("conv_mode", "version"):
        name = getattr(config, key, None)
        if isinstance(name, str) and name in conv_templates:
            return name
    if "<|im_start|>" in tokenizer.get_vocab():
        return "chatml_direct"
    if "[INST]" in str(getattr(tokenizer, "chat_template", "") or ""):
        return "llava_llama_2"
    return "vicuna_v1"


def padded_content_box(image: Image.Image, aspect_ratio: Optional[str]) -> Optional[tuple[float, float, float, float]]:
    """Where the image sits inside the square LLaVA pads it to ("pad"), as fractions of that square."""
    if aspect_ratio != "pad":
        return None
    w, h = image.size
    side = max(w, h)
    left, top = (side - w) / 2 / side, (side - h) / 2 / side
    return (left, top, left + w / side, top + h / side)


class LlavaBackbone(Backbone):
    name = "llava"
    comparison = COMPARISON
    restorable = ("mm_projector.", "noise_generator.")

    def serves(self, config: dict) -> bool:
        # A transformers-native LLaVA (llava-hf, with a text_config) is not this layout.
        return config.get("model_type") in LLAVA_MODEL_TYPES and "text_config" not in config

    # --- loading ------------------------------------------------------------------------------------------------
    def load_weights(self, weights: str, config_source: str, generator: Optional[NoiseGeneratorConfig], options):
        config = load_llava_config(config_source)
        if generator is not None:
            check_generator_fits(generator, config_source, hidden_size=config.hidden_size,
                                 base_model_type=LlavaConfig.model_type)
            config.noise_generator = generator.to_dict()
        model, info = LlavaLlamaForCausalLM.from_pretrained(
            weights, config=config, output_loading_info=True, **options.from_pretrained_kwargs(QUANTIZATION_SKIP)
        )
        return model, check_loading_info(info, weights)

    def load_projector(self, model, path: Path) -> list[str]:
        load_projector_file(model.get_model().mm_projector, path)
        return ["model.mm_projector."]

    def finish(self, model, options) -> None:
        tower = model.get_vision_tower()
        if tower is not None:
            weight = model.get_input_embeddings().weight
            tower.load_model(device=weight.device, dtype=weight.dtype if weight.dtype.is_floating_point else options.dtype)

    def load_processor(self, source: str, model) -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        new = []
        if getattr(model.config, "mm_use_im_patch_token", False):
            new.append(DEFAULT_IMAGE_PATCH_TOKEN)
        if getattr(model.config, "mm_use_im_start_end", False):
            new += [DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN]
        if new:
            tokenizer.add_tokens(new, special_tokens=True)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        tower = model.get_vision_tower()
        return tokenizer, tower.image_processor if tower is not None else None

    def context_length(self, model) -> int:
        # The model cuts longer sequences at tokenizer_model_max_length (what it was trained with); LLaVA's own rule
        # otherwise.
        config = model.config
        return int(getattr(config, "tokenizer_model_max_length", None) or getattr(config, "max_sequence_length", None)
                   or 2048)

    def default_template(self, loaded) -> Optional[str]:
        return infer_conv_mode(loaded.model, loaded.tokenizer)

    def check_template(self, template: Optional[str]) -> None:
        if template is not None and template not in conv_templates:
            raise ValueError(f"--conv-mode {template!r} is unknown; choose one of {', '.join(sorted(conv_templates))}.")

    # --- prompting ----------------------------------------------------------------------------------------------
    def render(self, loaded, prompt: Prompt) -> str:
        conv = get_conv_template(loaded.template)
        token = image_token(bool(getattr(loaded.model.config, "mm_use_im_start_end", False)))
        for role, text in prompt.turns:
            conv.append_message(conv.roles[0 if role == "user" else 1], text.replace(IMAGE_PLACEHOLDER, token))
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    def encode(self, loaded, prompt: Prompt) -> EncodedPrompt:
        text = self.render(loaded, prompt)
        ids = tokenizer_image_token(text, loaded.tokenizer, IMAGE_TOKEN_INDEX)
        tensors = {}
        if prompt.images:
            if loaded.processor is None:
                raise ValueError(f"{loaded.model_name} has no vision tower; it cannot answer questions about images.")
            tensors["images"] = process_images(prompt.images, loaded.processor, loaded.model.config)
        return EncodedPrompt(input_ids=ids, tensors=tensors, text=text)

    def prompt_length(self, loaded, encoded: EncodedPrompt) -> int:
        # Each image is one placeholder id in the prompt and num_patches features in the model.
        placeholders = encoded.input_ids.count(IMAGE_TOKEN_INDEX)
        tower = loaded.model.get_vision_tower() if placeholders else None
        return len(encoded.input_ids) + placeholders * ((tower.num_patches if tower is not None else 1) - 1)

    @staticmethod
    def pad_id(tokenizer) -> int:
        return next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, 0) if i is not None)

    def collate(self, loaded, samples: list[EncodedPrompt]) -> dict[str, Any]:
        pad = self.pad_id(loaded.tokenizer)
        longest = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(samples), longest), dtype=torch.long)
        for row, sample in enumerate(samples):
            n = len(sample.input_ids)
            ids[row, longest - n:] = torch.tensor(sample.input_ids, dtype=torch.long)
            mask[row, longest - n:] = 1
        pixels = [s.tensors["images"] for s in samples if "images" in s.tensors]
        images = torch.cat(pixels).to(device=loaded.device, dtype=loaded.dtype) if pixels else None
        return {"input_ids": ids.to(loaded.device), "attention_mask": mask.to(loaded.device), "images": images}

    def generate(self, loaded, batch: dict[str, Any], **kwargs) -> torch.Tensor:
        # The prompt enters as embeddings (images spliced in), so generate returns the new tokens only.
        inputs = dict(batch)
        return loaded.model.generate(inputs=inputs.pop("input_ids"), **inputs, pad_token_id=self.pad_id(loaded.tokenizer),
                                     eos_token_id=loaded.tokenizer.eos_token_id, **kwargs)

    def stop_strings(self, loaded) -> list[str]:
        stop = stop_string(get_conv_template(loaded.template))
        return [stop] if stop and stop != loaded.tokenizer.eos_token else []

    def role_names(self, loaded) -> tuple[str, str]:
        return tuple(get_conv_template(loaded.template).roles)

    # --- showing the noise --------------------------------------------------------------------------------------
    def image_grid(self, loaded, encoded: EncodedPrompt, image: Image.Image):
        side = loaded.model.get_vision_tower().num_patches_per_side
        return side, side, padded_content_box(image, getattr(loaded.model.config, "image_aspect_ratio", None))
