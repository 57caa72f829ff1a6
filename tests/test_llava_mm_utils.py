"""mm_utils: image padding colour, prompt tokenisation with BOS, model names, keyword stopping."""

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from llava_noise.constants import IMAGE_TOKEN_INDEX
from llava_noise.mm_utils import (
    KeywordsStoppingCriteria,
    expand2square,
    get_model_name_from_path,
    tokenizer_image_token,
)


@pytest.fixture(scope="module")
def tokenizer(world):
    return AutoTokenizer.from_pretrained(world["llava_llm"])


def test_expand2square_centres_image_on_background():
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    square = expand2square(image, (1, 2, 3))
    assert square.size == (4, 4)
    assert square.getpixel((0, 0)) == (1, 2, 3) and square.getpixel((0, 1)) == (255, 0, 0)
    assert square.getpixel((3, 2)) == (255, 0, 0) and square.getpixel((3, 3)) == (1, 2, 3)


def test_tokenizer_image_token_adds_bos_once_and_places_image(tokenizer):
    ids = tokenizer_image_token("USER: <image>\nred ASSISTANT:", tokenizer)
    head = tokenizer("USER: ", add_special_tokens=False)["input_ids"]
    tail = tokenizer("\nred ASSISTANT:", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.bos_token_id] + head + [IMAGE_TOKEN_INDEX] + tail
    tensor = tokenizer_image_token("<image>", tokenizer, return_tensors="pt")
    assert tensor.tolist() == [tokenizer.bos_token_id, IMAGE_TOKEN_INDEX]


def test_model_name_from_path_joins_checkpoint_folder():
    assert get_model_name_from_path("/x/llava-v1.5-7b/") == "llava-v1.5-7b"
    assert get_model_name_from_path("/x/run-lora/checkpoint-500") == "run-lora_checkpoint-500"


def test_keywords_stopping_criteria_stops_only_rows_that_end_with_keyword(tokenizer):
    stop = KeywordsStoppingCriteria(["</s>"], tokenizer, None)
    red = tokenizer("red", add_special_tokens=False)["input_ids"]
    step1 = torch.tensor([red[-1:], red[-1:]])
    assert stop(step1, None).tolist() == [False, False]
    step2 = torch.tensor([red[-1:] + [tokenizer.eos_token_id], red[-1:] + red[-1:]])
    assert stop(step2, None).tolist() == [True, False]
