"""LLaVA-1.5 model: parity with transformers' LlavaForConditionalGeneration, original checkpoints, text-only samples."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, LlamaConfig
from transformers import LlavaConfig as HFLlavaConfig
from transformers import LlavaForConditionalGeneration

from llava_noise.constants import IMAGE_TOKEN_INDEX
from llava_noise.conversation import conv_templates
from llava_noise.mm_utils import process_images, tokenizer_image_token
from llava_noise.model import LlavaLlamaForCausalLM
from llava_noise.model.builder import load_llava_config
from noise_generator import NoiseGeneratorConfig, NoiseOutput


class VisionArgs:
    def __init__(self, tower):
        self.vision_tower = tower
        self.mm_vision_select_layer = -2
        self.mm_vision_select_feature = "patch"
        self.mm_projector_type = "mlp2x_gelu"
        self.pretrain_mm_mlp_adapter = None


def build_llava(world, generator=False, seed=0):
    torch.manual_seed(seed)
    model = LlavaLlamaForCausalLM.from_pretrained(world["llava_llm"], config=load_llava_config(world["llava_llm"]))
    model.get_model().initialize_vision_modules(VisionArgs(world["llava_vision_tower"]))
    if generator:
        ng = NoiseGeneratorConfig(hidden_size=model.config.hidden_size, num_heads=4, inference_mode="mean")
        model.get_model().initialize_noise_generator(ng)
    return model.eval()


def hf_reference(model, image_token_id):
    """transformers' own LlavaForConditionalGeneration holding our model's weights."""
    cfg = model.config
    text = LlamaConfig(
        **{k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                         "rms_norm_eps", "rope_parameters")}
    )
    tower = model.get_vision_tower()
    hf_cfg = HFLlavaConfig(
        vision_config=tower.config.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=tower.num_patches,
    )
    hf = LlavaForConditionalGeneration(hf_cfg).eval()
    renames = {
        "model.vision_tower.vision_tower.": "model.vision_tower.",
        "model.mm_projector.0.": "model.multi_modal_projector.linear_1.",
        "model.mm_projector.2.": "model.multi_modal_projector.linear_2.",
    }
    state = {}
    for key, value in model.state_dict().items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        else:
            if key.startswith("model."):
                key = "model.language_model." + key[len("model."):]
        state[key] = value
    hf.load_state_dict(state, strict=True)
    return hf


def prompt_inputs(world, question):
    tokenizer = AutoTokenizer.from_pretrained(world["llava_llm"])
    conv = conv_templates["v1"].copy()
    conv.append_message(conv.roles[0], "<image>\n" + question)
    conv.append_message(conv.roles[1], None)
    ids = tokenizer_image_token(conv.get_prompt(), tokenizer, return_tensors="pt")
    return tokenizer, ids


def first_image(world):
    with open(world["llava_train_json"]) as handle:
        record = next(r for r in json.load(handle) if "image" in r)
    return Image.open(f"{world['image_folder']}/{record['image']}")


def expand_for_hf(ids, image_token_id, n):
    out = []
    for t in ids.tolist():
        out += [image_token_id] * n if t == IMAGE_TOKEN_INDEX else [t]
    return torch.tensor([out])


def test_logits_match_transformers_llava(world):
    model = build_llava(world)
    tokenizer, ids = prompt_inputs(world, "What colour is the shape?")
    unused = tokenizer.unk_token_id
    hf = hf_reference(model, unused)
    pixels = process_images([first_image(world)], model.get_vision_tower().image_processor, model.config)
    ours = model(input_ids=ids[None], images=pixels).logits
    theirs = hf(input_ids=expand_for_hf(ids, unused, model.get_vision_tower().num_patches), pixel_values=pixels).logits
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_greedy_generate_matches_transformers_llava(world):
    model = build_llava(world, seed=1)
    tokenizer, ids = prompt_inputs(world, "Which shape is it?")
    unused = tokenizer.unk_token_id
    hf = hf_reference(model, unused)
    pixels = process_images([first_image(world)], model.get_vision_tower().image_processor, model.config)
    ours = model.generate(ids[None], images=pixels, max_new_tokens=6, do_sample=False)
    hf_ids = expand_for_hf(ids, unused, model.get_vision_tower().num_patches)
    theirs = hf.generate(hf_ids, pixel_values=pixels, max_new_tokens=6, do_sample=False)[:, hf_ids.shape[1]:]
    assert ours.tolist() == theirs.tolist()


def test_left_padded_batch_generates_like_single_prompts(world):
    model = build_llava(world, generator=True, seed=2)
    tokenizer, short = prompt_inputs(world, "Colour?")
    _, long = prompt_inputs(world, "What is the colour of the shape in the picture?")
    pixels = process_images([first_image(world)] * 2, model.get_vision_tower().image_processor, model.config)
    pad = tokenizer.unk_token_id
    batch = torch.full((2, long.shape[0]), pad)
    mask = torch.zeros_like(batch)
    batch[0, -short.shape[0]:], mask[0, -short.shape[0]:] = short, 1
    batch[1], mask[1] = long, 1
    together = model.generate(batch, images=pixels, attention_mask=mask, max_new_tokens=5, do_sample=False)
    alone = [model.generate(x[None], images=pixels[:1], max_new_tokens=5, do_sample=False)[0] for x in (short, long)]
    assert together[0].tolist() == alone[0].tolist()
    assert together[1].tolist() == alone[1].tolist()


def test_original_checkpoint_loads_with_only_generator_missing(world, tmp_path):
    model = build_llava(world)
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    data = json.loads(config_file.read_text())
    data.update(model_type="llava", architectures=["LlavaLlamaForCausalLM"])  # as liuhaotian/llava-v1.5-7b says
    config_file.write_text(json.dumps(data))
    config = load_llava_config(tmp_path)
    config.noise_generator = NoiseGeneratorConfig(hidden_size=config.hidden_size, num_heads=4).to_dict()
    loaded, info = LlavaLlamaForCausalLM.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert info["missing_keys"] and all(k.startswith("model.noise_generator.") for k in info["missing_keys"])
    assert not info["mismatched_keys"]
    assert any(k.startswith("model.mm_projector.0.") for k in model.state_dict())
    torch.testing.assert_close(loaded.model.mm_projector[0].weight, model.model.mm_projector[0].weight)


def test_text_only_sample_runs_generator_without_noise(world):
    model = build_llava(world, generator=True, seed=3)
    model.train()
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 41, 42], [1, 43, 44, 45, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, -100, 41, 42], [-100, -100, 44, 45, -100]])
    pixels = torch.randn(2, 3, 56, 56)  # the second image is the text-only sample's dummy
    out = model(input_ids=ids, attention_mask=mask, labels=labels, images=pixels)
    out.loss.backward()
    grads = [p.grad for p in model.model.noise_generator.parameters()]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        noised = model(input_ids=ids, attention_mask=mask, images=pixels, noise_mode="mean").logits
        clean = model(input_ids=ids, attention_mask=mask, images=pixels, noise_mode="off").logits
    n_text = 4
    torch.testing.assert_close(noised[1, :n_text], clean[1, :n_text])
    assert not torch.allclose(noised[0], clean[0])


def test_num_samples_repeats_batch_and_keeps_the_mean_loss(world):
    model = build_llava(world, seed=4)
    ng = NoiseGeneratorConfig(hidden_size=model.config.hidden_size, num_heads=4, sample_noise=False, num_samples=3)
    model.get_model().initialize_noise_generator(ng)
    model.train()
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 41, 42], [1, IMAGE_TOKEN_INDEX, 43, 44, 45]])
    labels = torch.tensor([[-100, -100, -100, 41, 42], [-100, -100, 44, 45, 46]])
    pixels = torch.randn(2, 3, 56, 56)
    repeated = model(input_ids=ids, labels=labels, images=pixels)
    assert repeated.logits.shape[0] == 6
    model.model.noise_generator.config.num_samples = 1
    single = model(input_ids=ids, labels=labels, images=pixels)
    torch.testing.assert_close(repeated.loss, single.loss)  # deterministic noise: every draw is the same
    # With Trainer's token count, the repeated batch still averages (not sums) over the draws.
    n_items = torch.tensor(int((labels[:, 1:] != -100).sum()))
    model.model.noise_generator.config.num_samples = 3
    counted = model(input_ids=ids, labels=labels, images=pixels, num_items_in_batch=n_items)
    torch.testing.assert_close(counted.loss, single.loss)


def record_generator_calls(generator):
    """Forward hook: every call's key mask (the generator's third argument) and its noise."""
    calls = []
    hook = lambda module, args, out: calls.append((args[2].clone(), [n.clone() for n in out.noise]))  # noqa: E731
    return calls, generator.register_forward_hook(hook)


def test_answer_tokens_are_keys_only_in_training_with_condition_on_answer(world):
    """Eval with labels (e.g. a validation loss) must not let the generator see the answer it is scored on."""
    T, F = True, False
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 41, 42, 43], [1, IMAGE_TOKEN_INDEX, 44, 45, 46, 0]])
    other = torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 51, 52, 53], [1, IMAGE_TOKEN_INDEX, 44, 45, 56, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    answer = torch.tensor([[F, F, F, T, T, T], [F, F, F, F, T, F]])
    # Written out by hand: keys are the non-padding text tokens, without the answer unless it may be seen.
    with_answer = [[T, F, T, T, T, T], [T, F, T, T, T, F]]
    prompt_only = [[T, F, T, F, F, F], [T, F, T, T, F, F]]
    pixels = torch.randn(2, 3, 56, 56)
    for condition_on_answer in (True, False):
        model = build_llava(world, seed=5)
        ng = NoiseGeneratorConfig(hidden_size=model.config.hidden_size, num_heads=4, sample_noise=False,
                                  inference_mode="mean", condition_on_answer=condition_on_answer)
        model.get_model().initialize_noise_generator(ng)
        for training in (False, True):
            model.train(training)
            calls, handle = record_generator_calls(model.model.noise_generator)
            with torch.no_grad():
                for input_ids in (ids, other):
                    model(input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(~answer, -100),
                          images=pixels)
            handle.remove()
            (keys, noise), (keys_other, noise_other) = calls
            sees_answer = training and condition_on_answer
            assert keys.tolist() == keys_other.tolist() == (with_answer if sees_answer else prompt_only), (
                f"training={training}, condition_on_answer={condition_on_answer}"
            )
            changed = [not torch.equal(a, b) for a, b in zip(noise, noise_other)]
            # Sample 1's only answer token changed (45 -> 56 is at position 4): both samples see their answer.
            assert changed == [sees_answer, sees_answer], f"training={training}, condition={condition_on_answer}"


def token_loss_float64(logits, labels):
    """Mean next-token cross-entropy over the supervised positions, in float64, by hand."""
    log_probs = logits[:, :-1].double().log_softmax(-1)
    targets = labels[:, 1:]
    picked = targets != -100
    return -log_probs[picked].gather(-1, targets[picked][:, None]).mean()


def replace_noised_features(generator, features):
    """Forward hook that hands ``features`` to the model instead of what the generator computed."""
    return generator.register_forward_hook(lambda module, args, out: NoiseOutput(image_embeds=features, mode="sample"))


@pytest.mark.parametrize("m", [1, 3])
def test_num_items_in_batch_gives_the_mean_over_noise_draws(world, m):
    """A direct forward with the true supervised-token count (as the Trainer passes it) gives the mean loss over the
    m draws, each draw's loss recomputed by hand (m = 1 run fed that draw's noised features, float64 CE)."""
    model = build_llava(world, seed=6)
    ng = NoiseGeneratorConfig(hidden_size=model.config.hidden_size, num_heads=4, num_samples=m)
    model.get_model().initialize_noise_generator(ng)
    model.train()
    generator = model.model.noise_generator
    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 40, 41, 42], [1, IMAGE_TOKEN_INDEX, 43, 44, 45]])
    labels = torch.tensor([[-100, -100, -100, 41, 42], [-100, -100, 44, 45, 46]])
    n_items = torch.tensor(5)  # supervised next-token targets: labels[:, 1:] != -100, counted by hand
    pixels = torch.randn(2, 3, 56, 56)
    outputs, draws = {}, []
    with torch.no_grad():
        for counted in (False, True):
            handle = generator.register_forward_hook(lambda module, args, out: draws.append(out.image_embeds))
            torch.manual_seed(11)
            extra = {"num_items_in_batch": n_items} if counted else {}
            outputs[counted] = model(input_ids=ids, labels=labels, images=pixels, **extra).loss
            handle.remove()
        assert all(torch.equal(a, b) for a, b in zip(*draws))  # both runs drew the same noise
        features = draws[0]  # sample-major: sample i, draw j at i * m + j
        generator.config.num_samples = 1
        n_patches = model.get_vision_tower().num_patches
        spliced = torch.cat([labels[:, :1], torch.full((2, n_patches), -100), labels[:, 2:]], dim=1)
        per_draw = []
        for j in range(m):
            handle = replace_noised_features(generator, [features[i * m + j] for i in range(2)])
            per_draw.append(token_loss_float64(model(input_ids=ids, images=pixels).logits, spliced))
            handle.remove()
    expected = torch.stack(per_draw).mean()
    torch.testing.assert_close(outputs[False].double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outputs[True].double(), expected, rtol=1e-5, atol=1e-6)
    if m > 1:
        assert torch.stack(per_draw).std() > 1e-5  # the draws really differ
