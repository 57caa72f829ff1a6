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

from mung.vlmeval_base import CheckpointVLM


class QwenNoiseVLM(CheckpointVLM):
    """Qwen2.5-VL + MuNG: Qwen's chat template, greedy decoding up to ``<|im_end|>``."""

    def __init__(self, model_path: str, model_base: Optional[str] = None, noise_mode: Optional[str] = None,
                 max_new_tokens: int = 512, min_pixels: Optional[int] = None, max_pixels: Optional[int] = None,
                 device: Optional[str] = None, seed: int = 0, use_vllm: bool = False):
        # VLMEvalKit passes use_vllm to models registered under a name containing 'Qwen2.5-VL'.
        if use_vllm:
            raise ValueError("QwenNoiseVLM cannot run on vLLM (vLLM's Qwen2.5-VL has no MuNG generator); run "
                             "VLMEvalKit without --use-vllm.")
        super().__init__(model_path, model_base, noise_mode=noise_mode, max_new_tokens=max_new_tokens, device=device,
                         seed=seed, backbone_args={"min_pixels": min_pixels, "max_pixels": max_pixels})
