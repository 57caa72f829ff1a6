"""Configuration of Qwen2.5-VL with a MuNG noise generator: the stock config plus one ``noise_generator`` entry."""


from huggingface_hub.dataclasses import strict
from transformers import Qwen2_5_VLConfig


@strict
class Qwen2_5_VLNoiseConfig(Qwen2_5_VLConfig):
    r"""
    A [`Qwen2_5_VLConfig`] that also carries the noise generator's settings, so `from_pretrained` on a tuned folder
    rebuilds the generator. A stock Qwen2.5-VL `config.json` loads into it unchanged (with no generator).

    noise_generator (`dict`, *optional*):
        `NoiseGeneratorConfig.to_dict()` of the generator applied to the merger outputs; `None` means no generator
        (the model is then the stock Qwen2.5-VL).
    """

    model_type = "qwen2_5_vl_noise"

    noise_generator: dict | None = None


__all__ = ["Qwen2_5_VLNoiseConfig"]
