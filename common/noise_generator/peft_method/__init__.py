"""MuNG as a peft method (a "tuner room" as peft lays out its own: ``config``, ``layer``, ``model``), registered
with peft when this module is imported (importing ``noise_generator`` or ``mung`` imports it).

    from peft import get_peft_model
    from noise_generator.peft_method import MuNGConfig
    model = get_peft_model(vlm, MuNGConfig(num_heads=4))          # + lora_r=8 for MuNG + LoRA in one adapter

``PeftModel.from_pretrained`` / TRL's ``SFTTrainer(peft_config=MuNGConfig(...))`` then work as for LoRA.
``convert`` turns a project generator-only checkpoint into a MuNG adapter and back.
"""

from .config import MuNGConfig
from .layer import AdapterAttachment, MuNGLayer
from .model import MuNGModel
from .registration import MEMBER_VALUE, mung_peft_type, register

register()

__all__ = ["AdapterAttachment", "MEMBER_VALUE", "MuNGConfig", "MuNGLayer", "MuNGModel", "mung_peft_type", "register"]
