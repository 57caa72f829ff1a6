"""A VLMEvalKit model class that evaluates LLaVA-1.5 *with* its MuNG generator.

VLMEvalKit's stock LLaVA wrapper loads the original LLaVA code and would evaluate without the generator. Register
this one instead (in VLMEvalKit's ``vlmeval/config.py``)::

    from functools import partial
    from llava_noise.vlmeval import LlavaNoiseVLM
    supported_VLM["llava-v1.5-7b-mung"] = partial(LlavaNoiseVLM, model_path="checkpoints/llava-mung", noise_mode="mean")

Prompts, images and decoding are the shared answering path's (``mung.answering``), so a benchmark question gets
the answer ``model_vqa_loader`` gives it; the conversation template is the checkpoint's (``conv_mode`` overrides).
"""

from typing import Optional

from mung.vlmeval_base import CheckpointVLM


class LlavaNoiseVLM(CheckpointVLM):
    """LLaVA-1.5 + MuNG; several images go where each stands (one ``<image>`` each)."""

    def __init__(self, model_path: str, model_base: Optional[str] = None, conv_mode: Optional[str] = None,
                 noise_mode: Optional[str] = None, max_new_tokens: int = 512, device: Optional[str] = None,
                 seed: int = 0):
        super().__init__(model_path, model_base, noise_mode=noise_mode, max_new_tokens=max_new_tokens,
                         conv_mode=conv_mode, device=device, seed=seed)
