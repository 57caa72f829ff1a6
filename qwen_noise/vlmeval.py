"""A VLMEvalKit model class that evaluates Qwen2.5-VL *with* its MuNG generator.

VLMEvalKit's stock Qwen2.5-VL wrapper builds the stock transformers class and would silently evaluate the base
model. Register this one instead (in VLMEvalKit's ``vlmeval/config.py``)::

    from functools import partial
    from qwen_noise.vlmeval import QwenNoiseVLM
    supported_VLM["qwen2.5-vl-3b-mung"] = partial(
        QwenNoiseVLM, model_path="checkpoints/qwen-mung", model_base="Qwen/Qwen2.5-VL-3B-Instruct", noise_mode="mean"
    )

then ``python run.py --data MMBench_DEV_EN --model qwen2.5-vl-3b-mung``. It needs no VLMEvalKit import itself.
"""

from typing import Optional

import torch

from .data import build_inference_inputs
from .data.prompting import IMAGE_PLACEHOLDER
from .model.builder import load_pretrained_model


class QwenNoiseVLM:
    """VLMEvalKit model: ``generate_inner(message, dataset)`` with ``message = [{"type": "image"|"text", "value"}]``."""

    INSTALL_REQ = False
    INTERLEAVE = True

    def __init__(
        self,
        model_path: str,
        model_base: Optional[str] = None,
        noise_mode: Optional[str] = None,
        max_new_tokens: int = 512,
        min_pixels: Optional[int] = None,
        max_pixels: Optional[int] = None,
        device: Optional[str] = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"QwenNoiseVLM got unknown arguments {sorted(kwargs)}.")
        self.processor, self.model = load_pretrained_model(model_path, model_base, device=device, noise_mode=noise_mode)
        self.noise_mode = noise_mode
        self.max_new_tokens = max_new_tokens
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    def use_custom_prompt(self, dataset: Optional[str]) -> bool:
        return False

    @staticmethod
    def message_to_turn(message: list[dict]) -> tuple[str, list[str]]:
        """The user text (an ``<image>`` where each image stands) and the image paths, in order."""
        text, images = "", []
        for item in message:
            kind, value = item.get("type"), item.get("value")
            if kind == "image":
                text += IMAGE_PLACEHOLDER
                images.append(value)
            elif kind == "text":
                # As in training data: a newline between an image and the text that follows it.
                text += ("\n" if text.endswith(IMAGE_PLACEHOLDER) else "") + value
            else:
                raise ValueError(f"Unsupported message item {item!r}; expected type 'image' or 'text'.")
        return text, images

    @torch.inference_mode()
    def generate_inner(self, message: list[dict], dataset: Optional[str] = None) -> str:
        text, images = self.message_to_turn(message)
        inputs = build_inference_inputs(
            self.processor, [("user", text)], images, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        tokenizer = self.processor.tokenizer
        output = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
            noise_mode=self.noise_mode,
        )
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    def generate(self, message: list[dict], dataset: Optional[str] = None) -> str:
        """VLMEvalKit's BaseModel entry point (strings are treated as one text item)."""
        if isinstance(message, str):
            message = [{"type": "text", "value": message}]
        return self.generate_inner(message, dataset)
