"""A VLMEvalKit model class that evaluates LLaVA-1.5 *with* its MuNG generator.

VLMEvalKit's stock LLaVA wrapper loads the original LLaVA code and would evaluate without the generator. Register
this one instead (in VLMEvalKit's ``vlmeval/config.py``)::

    from functools import partial
    from llava_noise.vlmeval import LlavaNoiseVLM
    supported_VLM["llava-v1.5-7b-mung"] = partial(LlavaNoiseVLM, model_path="checkpoints/llava-mung", noise_mode="mean")

Prompts, images and decoding are the eval scripts' (``llava_noise.eval.inference``), so a benchmark question gets
the answer ``model_vqa_loader`` gives it; the conversation template is the checkpoint's, as in the CLI.
"""

from argparse import Namespace
from typing import Optional

import torch

from mung.vlmeval_base import IMAGE_PLACEHOLDER, MungVLM

from .constants import IMAGE_TOKEN_INDEX
from .eval.inference import (
    conversation,
    default_device,
    generate,
    generation_kwargs,
    image_tensor,
    image_token,
    infer_conv_mode,
    load_for_inference,
    load_image,
    stop_string,
)
from .mm_utils import tokenizer_image_token


class LlavaNoiseVLM(MungVLM):
    """LLaVA-1.5 + MuNG: the checkpoint's conversation template (``conv_mode`` overrides), greedy decoding cut at
    the template's stop string. Several images go where each stands (one ``<image>`` each)."""

    def __init__(
        self,
        model_path: str,
        model_base: Optional[str] = None,
        conv_mode: Optional[str] = None,
        noise_mode: Optional[str] = None,
        max_new_tokens: int = 512,
        device: Optional[str] = None,
        seed: int = 0,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"LlavaNoiseVLM got unknown arguments {sorted(kwargs)}.")
        super().__init__()
        self.loaded = load_for_inference(Namespace(
            model_path=model_path, model_base=model_base, device=device or default_device(), noise_mode=noise_mode,
            seed=seed))
        self.conv_mode = conv_mode or infer_conv_mode(self.loaded.model, self.loaded.tokenizer)
        self.stop_str = stop_string(conversation(self.conv_mode))  # an unknown template fails here, not mid-run
        self.image_text = image_token(bool(getattr(self.loaded.model.config, "mm_use_im_start_end", False)))
        self.gen_kwargs = generation_kwargs(Namespace(temperature=0, top_p=None, num_beams=1,
                                                      max_new_tokens=max_new_tokens))

    def prompt(self, turns: list[tuple[str, str]]) -> str:
        """The template's generation prompt for ``turns`` (user/assistant, ending with a user turn)."""
        conv = conversation(self.conv_mode)
        user, assistant = conv.roles
        for role, text in turns:
            conv.append_message(user if role == "user" else assistant, text.replace(IMAGE_PLACEHOLDER, self.image_text))
        conv.append_message(assistant, None)
        return conv.get_prompt()

    @torch.inference_mode()
    def answer(self, turns: list[tuple[str, str]], images: list[str]) -> str:
        ids = tokenizer_image_token(self.prompt(turns), self.loaded.tokenizer, IMAGE_TOKEN_INDEX)
        pixels = image_tensor([load_image(path) for path in images], self.loaded) if images else None
        return generate(self.loaded, [ids], pixels, self.gen_kwargs, self.stop_str)[0]
