"""Generator config, checkpoint files and the training helpers shared by the backbones."""

import json

import pytest
import torch
from transformers import HfArgumentParser

from mung.training.distributed import save_generator_from_model
from mung.training.flags import NoiseGeneratorArguments, check_generator_flags
from mung.training.parameters import count_parameters, describe_trainable, optimizer_groups
from noise_generator import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    NoiseGenerator,
    NoiseGeneratorConfig,
    find_noise_generator,
    is_noise_generator_dir,
    load_noise_generator,
    NoiseDraws,
    restore_generator,
    save_noise_generator,
    text_key_mask,
)


def generator(d=16, **kw):
    torch.manual_seed(0)
    return NoiseGenerator(NoiseGeneratorConfig(hidden_size=d, num_heads=4, **kw))


def test_config_round_trips_through_json(tmp_path):
    cfg = NoiseGeneratorConfig(hidden_size=64, num_heads=2, kind="mlp", injection="mul", num_samples=3, init="zero")
    cfg.to_json_file(tmp_path / "c.json")
    assert NoiseGeneratorConfig.from_json_file(tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["kind"] == "mlp"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "transformer"}, "kind='transformer' is not supported"),
        ({"injection": "sub"}, "injection"),
        ({"inference_mode": "random"}, "inference_mode"),
        ({"num_heads": 5}, "not divisible"),
        ({"num_samples": 0}, "num_samples"),
        ({"log_sigma_min": 3.0}, "log_sigma_min"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseGeneratorConfig(hidden_size=64, **kwargs)


def test_config_rejects_unknown_keys_naming_the_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hidden_size": 8, "num_heads": 2, "flavour": "x"}))
    with pytest.raises(ValueError, match=r"flavour.*c\.json"):
        NoiseGeneratorConfig.from_json_file(path)
    path.write_text('{"hidden_size": 8,\n "num_heads": }')
    with pytest.raises(ValueError, match="line 2"):
        NoiseGeneratorConfig.from_json_file(path)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    gen = generator()
    save_noise_generator(gen, tmp_path)
    assert is_noise_generator_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])
    loaded = load_noise_generator(tmp_path, hidden_size=16)
    images, text, mask = [torch.randn(3, 16)], torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool)
    assert torch.equal(gen(images, text, mask, mode="mean").image_embeds[0], loaded(images, text, mask, mode="mean").image_embeds[0])
    assert loaded.config == gen.config


def test_load_refuses_another_hidden_size_naming_both(tmp_path):
    save_noise_generator(generator(d=16), tmp_path)
    with pytest.raises(ValueError, match=r"hidden size 16.*hidden size is 32"):
        load_noise_generator(tmp_path, hidden_size=32)


def test_load_refuses_a_generator_of_the_other_backbone(tmp_path):
    save_noise_generator(generator(base_model_type="qwen2_5_vl_noise"), tmp_path)
    with pytest.raises(ValueError, match="trained on a 'qwen2_5_vl_noise' model"):
        load_noise_generator(tmp_path, base_model_type="llava_noise")


def test_load_reports_missing_files_and_corrupt_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_noise_generator(tmp_path / "nowhere")
    save_noise_generator(generator(), tmp_path)
    data = (tmp_path / WEIGHTS_NAME).read_bytes()
    (tmp_path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_noise_generator(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_noise_generator(tmp_path)


def test_load_refuses_weights_of_another_kind(tmp_path):
    save_noise_generator(generator(kind="mlp"), tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    cfg["kind"] = "cross_attn"
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing \['k_proj.bias'"):
        load_noise_generator(tmp_path)


def test_save_refuses_partitioned_or_incomplete_tensors(tmp_path):
    gen = generator()
    state = gen.state_dict()
    state["q_proj.weight"] = torch.empty(0)
    with pytest.raises(ValueError, match="still partitioned"):
        save_noise_generator(gen, tmp_path, state_dict=state)
    del state["q_proj.weight"]
    with pytest.raises(ValueError, match="incomplete"):
        save_noise_generator(gen, tmp_path, state_dict=state)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_text_key_mask_excludes_padding_images_and_optionally_answers():
    attention = torch.tensor([[1, 1, 1, 1, 0]])
    image = torch.tensor([[0, 1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([[-100, -100, -100, 7, -100]])
    with_answer, prompt_only = [[True, False, True, True, False]], [[True, False, True, False, False]]
    assert text_key_mask(attention, image, labels, training=True, condition_on_answer=True).tolist() == with_answer
    assert text_key_mask(attention, image, labels, training=True, condition_on_answer=False).tolist() == prompt_only
    # Outside training the answer is never a key, whatever condition_on_answer says (the default is eval).
    assert text_key_mask(attention, image, labels, training=False, condition_on_answer=True).tolist() == prompt_only
    assert text_key_mask(attention, image, labels).tolist() == prompt_only
    assert text_key_mask(None, image).tolist() == [[True, False, True, True, True]]


def test_noise_draws_and_the_token_count_follow_training_and_mode():
    gen = NoiseGenerator(NoiseGeneratorConfig(hidden_size=8, num_heads=2, num_samples=3))
    assert NoiseDraws.for_call(gen, training=True).m == 3
    assert NoiseDraws.for_call(gen, training=True, mode="mean").m == 3
    assert NoiseDraws.for_call(gen, training=True, mode="off").m == 1  # identical copies would only cost time
    assert NoiseDraws.for_call(gen, training=False).m == 1 and NoiseDraws.for_call(None, training=True).m == 1
    assert NoiseDraws(3).num_items(torch.tensor(7)).item() == 21 and NoiseDraws(1).num_items(7) == 7
    assert NoiseDraws(3).num_items(None) is None
    assert NoiseDraws(3).loss_kwargs({"num_items_in_batch": 7, "x": 1}) == {"num_items_in_batch": 21, "x": 1}


def test_repeat_for_noise_samples_is_sample_major():
    x = torch.tensor([[1], [2]])
    assert NoiseDraws(3).repeat(x).flatten().tolist() == [1, 1, 1, 2, 2, 2]
    assert NoiseDraws(1).repeat(x) is x and NoiseDraws(4).repeat(None) is None
    assert NoiseDraws(2).repeat_list(["a", "b"]) == ["a", "a", "b", "b"]


class _Host(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.llm = torch.nn.Linear(16, 16)
        self.mm_projector = torch.nn.Linear(16, 16)
        self.noise_generator = generator()
        self.llm.requires_grad_(False)


def test_optimizer_groups_split_lr_and_decay():
    host = _Host()
    groups = optimizer_groups(host, weight_decay=0.1, lr_overrides={"noise_generator": 5e-4, "mm_projector": None})
    by_key = {(g.get("lr"), g["weight_decay"]): sum(p.numel() for p in g["params"]) for g in groups}
    assert by_key == {(5e-4, 0.1): 6 * 16 * 16, (5e-4, 0.0): 6 * 16, (None, 0.1): 16 * 16, (None, 0.0): 16}
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in host.parameters() if p.requires_grad)


def test_trainable_count_and_share_line():
    host = _Host()
    trainable, total = count_parameters(host)
    assert (trainable, total) == (6 * 16 * 17 + 16 * 17, 8 * 16 * 17)
    assert f"{100 * trainable / total:.4f}" in describe_trainable(host)


def test_save_generator_from_model_writes_generator_only_files(tmp_path):
    host = _Host()
    assert find_noise_generator(host) is host.noise_generator
    save_generator_from_model(host, tmp_path)
    loaded = load_noise_generator(tmp_path)
    for name, tensor in host.noise_generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert save_generator_from_model(torch.nn.Linear(2, 2), tmp_path / "none") is None


def test_ng_flags_parse_into_a_generator_config():
    (args,) = HfArgumentParser(NoiseGeneratorArguments).parse_args_into_dataclasses(
        ["--ng_kind", "mlp", "--ng_heads", "2", "--ng_sample_noise", "False", "--ng_num_samples", "3", "--ng_lr", "1e-3"]
    )
    cfg = args.to_config(hidden_size=64, base_model_type="llava_noise")
    assert (cfg.kind, cfg.num_heads, cfg.sample_noise, cfg.num_samples, cfg.base_model_type) == ("mlp", 2, False, 3, "llava_noise")
    assert args.ng_lr == 1e-3
    bad = NoiseGeneratorArguments(ng_kind="bogus")
    with pytest.raises(ValueError, match="bogus"):
        bad.to_config(hidden_size=64)


def test_ng_init_normal_and_its_std_parse_and_are_checked_before_loading():
    (args,) = HfArgumentParser(NoiseGeneratorArguments).parse_args_into_dataclasses(
        ["--ng_init", "normal", "--ng_init_std", "0.03"]
    )
    check_generator_flags(args)
    cfg = args.to_config(hidden_size=64)
    assert (cfg.init, cfg.init_std) == ("normal", 0.03)
    assert NoiseGeneratorArguments().to_config(hidden_size=64).init_std == 0.02
    with pytest.raises(ValueError, match="--ng_init_std"):
        check_generator_flags(NoiseGeneratorArguments(ng_init="normal", ng_init_std=0.0))
    with pytest.raises(ValueError, match="--ng_init 'gauss'.*xavier, normal, zero"):
        check_generator_flags(NoiseGeneratorArguments(ng_init="gauss"))


def test_restore_generator_copies_a_checkpoint_into_the_model_and_names_it(tmp_path):
    saved = generator()  # seed 0
    save_noise_generator(saved, tmp_path)
    torch.manual_seed(1)
    host = _Host()
    host.noise_generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=16, num_heads=4)).double()
    assert not torch.equal(host.noise_generator.q_proj.weight.float(), saved.q_proj.weight)
    assert restore_generator(host, tmp_path) == "noise_generator"
    for name, tensor in saved.state_dict().items():
        restored = host.noise_generator.state_dict()[name]
        assert restored.dtype == torch.float64 and torch.equal(restored, tensor.double()), name


def test_restore_generator_refuses_another_config_or_a_model_without_one(tmp_path):
    save_noise_generator(generator(), tmp_path)
    other = _Host()
    other.noise_generator = NoiseGenerator(NoiseGeneratorConfig(hidden_size=16, num_heads=2))
    with pytest.raises(ValueError, match=r"differs from the model's.*--ng_\* flags"):
        restore_generator(other, tmp_path)
    with pytest.raises(ValueError, match="holds a noise generator but the model has none"):
        restore_generator(torch.nn.Linear(2, 2), tmp_path)
