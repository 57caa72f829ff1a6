"""NEFTune rows of mung.compare: the flag reaches each backbone's TrainingArguments, and the Trainer's own NEFTune
hook (transformers.integrations.neftune, what Trainer.train activates) noises the token embeddings in training mode
only: in eval mode (and so when answering) the embeddings are exactly the plain lookup."""

import shlex

import pytest
import torch
import transformers
from transformers.integrations.neftune import activate_neftune

from mung.compare.plan import METHODS, NEFTUNE_ALPHA

from test_compare import env_of

BACKBONES = {"llava": ("llava_noise.train.args", "llava_llm"), "qwen": ("qwen_noise.train.args", "qwen_model")}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("method", ["NEFTune (full FT)", "NEFTune+LoRA r32"])
def test_the_neftune_flag_reaches_each_backbones_training_arguments(backbone, method):
    import importlib

    args_module = importlib.import_module(BACKBONES[backbone][0])
    _, _, extra = env_of(backbone, method)
    flags = extra[extra.index("--neftune_noise_alpha"):][:2]
    parser = transformers.HfArgumentParser(args_module.TrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", "/tmp/x", "--use_cpu", "True", *flags],
                                                 return_remaining_strings=False)
    assert args.neftune_noise_alpha == NEFTUNE_ALPHA
    assert METHODS[method].train_flags == ("--neftune_noise_alpha", str(NEFTUNE_ALPHA))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_neftune_noise_reaches_the_embeddings_only_in_training(tiny_world, backbone):
    path = tiny_world[BACKBONES[backbone][1]]
    auto = transformers.AutoModelForCausalLM if backbone == "llava" else transformers.AutoModelForImageTextToText
    model = auto.from_pretrained(path)
    embeddings = model.get_input_embeddings()
    ids = torch.tensor([[5, 9, 17, 33, 2, 8]])
    plain = embeddings.weight[ids].detach()
    handle = activate_neftune(model, NEFTUNE_ALPHA)
    try:
        model.train()
        noised, again = embeddings(ids).detach(), embeddings(ids).detach()
        bound = NEFTUNE_ALPHA / (ids.shape[1] * plain.shape[-1]) ** 0.5  # alpha / sqrt(L d)
        difference = (noised - plain).abs()
        assert 0.5 * bound < difference.max() <= bound + 1e-7
        assert not torch.equal(noised, again)  # fresh noise every call
        model.eval()
        assert torch.equal(embeddings(ids), plain)
        with torch.no_grad():  # and so the whole model in eval mode is the model without the hook
            hooked = model(input_ids=ids).logits
        handle.remove()
        with torch.no_grad():
            assert torch.equal(model(input_ids=ids).logits, hooked)
    finally:
        handle.remove()
