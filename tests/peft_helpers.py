"""Helpers of the MuNG peft-method tests: a family model wrapped by peft with MuNG, a batch with labels, logits in a
fixed noise mode."""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText

from noise_generator import noise_mode
from noise_generator.peft_method import MuNGConfig
from vlm_helpers import chat_batch, world_images

QUESTIONS = ["What color is the shape?", "How many circles are there in this picture?"]
ANSWERS = ["red", "two"]
# The two families the issue names for every behaviour beyond the round trip.
CORE_FAMILIES = ["gemma3", "qwen2_vl"]


def stock_model(folder: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForImageTextToText.from_pretrained(folder).eval()


def mung_model(folder: str, adapter_name: str = "default", seed: int = 1, **settings):
    """``get_peft_model`` of the family at ``folder`` with a MuNG adapter (4 heads unless said otherwise)."""
    from peft import get_peft_model

    model = stock_model(folder)
    torch.manual_seed(seed)
    return get_peft_model(model, MuNGConfig(**{"num_heads": 4, **settings}), adapter_name=adapter_name).eval()


def labelled_batch(processor, tiny_world) -> dict:
    """The two-sample chat batch with answers, labels = the tokens (padding ignored)."""
    batch = chat_batch(processor, world_images(tiny_world), QUESTIONS, ANSWERS)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    return dict(batch, labels=labels)


def question_batch(processor, tiny_world) -> dict:
    return chat_batch(processor, world_images(tiny_world), QUESTIONS)


def logits(model, batch: dict, mode: str = "mean") -> torch.Tensor:
    with torch.no_grad(), noise_mode(model, mode):
        return model(**batch).logits


def perturb_lora(model, scale: float = 0.5) -> None:
    """Give every LoRA B matrix non-zero values (peft starts them at zero, where LoRA changes nothing)."""
    torch.manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
