"""A VLMEvalKit model class that evaluates Qwen2.5-VL *with* its MuNG generator.

VLMEvalKit's stock Qwen2.5-VL wrapper builds the stock transformers class and would silently evaluate the base
model. Register this one instead (in VLMEvalKit's ``vlmeval/config.py``)::

    from functools import partial
    from qwen_noise.vlmeval import QwenNoiseVLM
    supported_VLM["qwen2.5-vl-3b-mung"] = partial(
        QwenNoiseVLM, model_path="checkpoints/qwen-mung", model_base="Qwen/Qwen2.5-VL-3B-Instruct", noise_mode="mean"
    )

then ``python run.py --data MMBench_DEV_EN --model qwen2.5-vl-3b-mung``. The runner's contract (``set_dump_image``,
``use_custom_prompt``, ``generate``, ``chat``) comes from ``mung.vlmeval_base``; VLMEvalKit itself is optional.
"""

from typing import Optional

import torch
from transformers import set_seed

from mung.vlmeval_base import MungVLM

from .data import build_inference_inputs
from .model.builder import load_pretrained_model


class QwenNoiseVLM(MungVLM):
    """Qwen2.5-VL + MuNG: Qwen's chat template, greedy decoding up to ``<|im_end|>``."""

    def __init__(
        self,
        model_path: str,
        model_base: Optional[str] = None,
        noise_mode: Optional[str] = None,
        max_new_tokens: int = 512,
        min_pixels: Optional[int] = None,
        max_pixels: Optional[int] = None,
        device: Optional[str] = None,
        seed: int = 0,
        use_vllm: bool = False,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"QwenNoiseVLM got unknown arguments {sorted(kwargs)}.")
        # VLMEvalKit passes use_vllm to models registered under a name containing 'Qwen2.5-VL'.
        if use_vllm:
            raise ValueError("QwenNoiseVLM cannot run on vLLM (vLLM's Qwen2.5-VL has no MuNG generator); run "
                             "VLMEvalKit without --use-vllm.")
        super().__init__()
        set_seed(seed)
        self.processor, self.model = load_pretrained_model(model_path, model_base, device=device, noise_mode=noise_mode)
        self.noise_mode = noise_mode
        self.max_new_tokens = max_new_tokens
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    @torch.inference_mode()
    def answer(self, turns: list[tuple[str, str]], images: list[str]) -> str:
        inputs = build_inference_inputs(
            self.processor, turns, images, min_pixels=self.min_pixels, max_pixels=self.max_pixels
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
