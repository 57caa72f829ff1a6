"""Helpers of the generic-backbone tests: the families under test, one model + batch per family, captures."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from noise_generator import NoiseGeneratorConfig, attach
from tiny_world.family_specs import FAMILIES
from vlm_noise import prompting

# Every family the generic backbone is tested on; smolvlm needs num2words for transformers' processor.
FAMILY_NAMES = sorted(list(FAMILIES) + ["qwen2_5_vl"])
# Prefix-LM: PaliGemma's prompt (images first, then the text) attends bidirectionally, so noise reaches every row.
PREFIX_LM = {"paligemma"}


def family_folder(vlm_families: dict, name: str) -> str:
    if name not in vlm_families:
        missing = FAMILIES[name].missing_modules() if name in FAMILIES else []
        pytest.skip(f"{name}: transformers needs {missing} for its processor" if missing else f"{name} not built")
    return vlm_families[name]


def load_family(folder: str, generator: dict | None = None):
    """(model in eval mode, processor) of a family folder, with a new generator attached when ``generator`` is
    given (NoiseGeneratorConfig settings; hidden_size is the model's)."""
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    if generator is not None:
        width = model.config.get_text_config().hidden_size
        attach(model, NoiseGeneratorConfig(**{"hidden_size": width, "num_heads": 4, **generator}))
    return model, processor


def world_images(tiny_world, count: int = 2) -> list[Image.Image]:
    lines = open(tiny_world["eval_questions"]).read().splitlines()[:count]
    return [Image.open(os.path.join(tiny_world["image_folder"], json.loads(l)["image"])).convert("RGB") for l in lines]


def chat_batch(processor, images: list[Image.Image], questions: list[str], answers: list[str] | None = None):
    """A left-padded batch: sample i asks ``questions[i]`` about ``images[i]`` (text before the image, so rows
    before the first image exist), optionally with ``answers[i]`` as the assistant turn."""
    texts = []
    for i, question in enumerate(questions):
        turns = [("user", f"Look at this: <image>{question}")]
        if answers is not None:
            turns.append(("assistant", answers[i]))
        texts.append(prompting.render(processor, prompting.messages_of(turns), add_generation_prompt=answers is None))
    return prompting.process(processor, texts, [[image] for image in images])


class DecoderInputs:
    """Records the ``inputs_embeds`` the decoder of ``model`` receives (register after ``attach``)."""

    def __init__(self, model):
        self.seen: list[torch.Tensor] = []
        self.handle = model.get_decoder().register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.seen.append(kwargs["inputs_embeds"].detach().clone())

    def remove(self):
        self.handle.remove()


class GeneratorCalls:
    """Records each generator call's key mask and forces each call's eps (one list of per-sample tensors per call,
    cycled) when ``eps`` is given."""

    def __init__(self, generator, eps: list | None = None):
        self.generator, self.eps, self.key_masks, self.outputs = generator, eps, [], []
        original = generator.forward

        def forward(image_embeds, text_embeds, text_mask, mode=None, **kwargs):
            if self.eps is not None:
                kwargs["eps"] = self.eps[len(self.key_masks) % len(self.eps)]
            self.key_masks.append(text_mask.detach().clone())
            output = original(image_embeds, text_embeds, text_mask, mode=mode, **kwargs)
            self.outputs.append(output)
            return output

        generator.forward = forward

    def remove(self):
        del self.generator.forward
