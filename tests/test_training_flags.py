"""Training flags: the ``--ng_*`` flags follow ``NoiseGeneratorConfig``'s fields (one definition), their values are
checked by the config and reported with the flag names; flags a run accepts but would not use are refused where that
would mislead and warned about otherwise (both backbones)."""

import dataclasses
import logging

import pytest
from transformers import HfArgumentParser

from mung.training.flags import NoiseGeneratorArguments, check_generator_flags, generator_flags
from noise_generator import NoiseGeneratorConfig

FLAGS_LOGGER = "mung.training.flags"


def option_strings(flags_class) -> set[str]:
    parser = HfArgumentParser(flags_class)
    return {option for action in parser._actions for option in action.option_strings}


# --- the --ng_* flags -------------------------------------------------------------------------------------------------
def test_every_generator_setting_has_a_flag_with_its_default_and_help():
    by_flag = {spec.name: spec for spec in dataclasses.fields(NoiseGeneratorArguments)}
    options = option_strings(NoiseGeneratorArguments)
    for setting in dataclasses.fields(NoiseGeneratorConfig):
        if setting.name in ("hidden_size", "base_model_type"):  # the backbone fills them in
            continue
        flag = "ng_heads" if setting.name == "num_heads" else f"ng_{setting.name}"
        assert f"--{flag}" in options, setting.name
        assert by_flag[flag].default == setting.default, setting.name
        assert by_flag[flag].metadata["help"] == setting.metadata["help"], setting.name
    assert "--ng_lr" in options and "--ng_num_heads" in options


def test_a_new_config_field_gets_its_flag_with_no_other_change():
    @dataclasses.dataclass
    class WiderConfig(NoiseGeneratorConfig):
        temperature: float = dataclasses.field(default=1.0, metadata={"help": "A setting added later."})

    flags_class = generator_flags(WiderConfig)
    (args,) = HfArgumentParser(flags_class).parse_args_into_dataclasses(["--ng_temperature", "0.5", "--ng_heads", "2"])
    config = args.to_config(hidden_size=8, base_model_type="llava_noise")
    assert isinstance(config, WiderConfig)
    assert (config.temperature, config.num_heads, config.hidden_size) == (0.5, 2, 8)


def test_every_flag_reaches_the_config():
    argv = ["--ng_num_heads", "2", "--ng_kind", "mlp", "--ng_injection", "mul", "--ng_sample_noise", "False",
            "--ng_num_samples", "3", "--ng_inference_mode", "mean", "--ng_condition_on_answer", "False",
            "--ng_log_sigma_min", "-5", "--ng_log_sigma_max", "1", "--ng_gaussian_std", "0.2", "--ng_init", "normal",
            "--ng_init_std", "0.05", "--ng_lr", "1e-3"]
    (args,) = HfArgumentParser(NoiseGeneratorArguments).parse_args_into_dataclasses(argv)
    expected = NoiseGeneratorConfig(
        hidden_size=16, num_heads=2, kind="mlp", injection="mul", sample_noise=False, num_samples=3,
        inference_mode="mean", condition_on_answer=False, log_sigma_min=-5.0, log_sigma_max=1.0, gaussian_std=0.2,
        init="normal", init_std=0.05, base_model_type="qwen2_5_vl",
    )
    assert args.to_config(hidden_size=16, base_model_type="qwen2_5_vl") == expected
    assert args.ng_lr == 1e-3


@pytest.mark.parametrize("values, message", [
    ({"ng_heads": 0}, r"^--ng_heads 0 must be an int >= 1"),
    ({"ng_num_samples": 0}, r"^--ng_num_samples 0 must be an int >= 1"),
    ({"ng_log_sigma_min": 3.0}, r"^--ng_log_sigma_min 3\.0 must be below --ng_log_sigma_max \(2\.0\)"),
    ({"ng_gaussian_std": -0.1}, r"^--ng_gaussian_std -0\.1 must be >= 0"),
    ({"ng_inference_mode": "random"}, r"^--ng_inference_mode 'random' is not supported; choose one of sample, mean"),
    ({"ng_lr": 0.0}, r"^--ng_lr 0\.0 must be positive"),
])
def test_bad_generator_flags_are_named_before_loading(values, message):
    with pytest.raises(ValueError, match=message):
        check_generator_flags(NoiseGeneratorArguments(**values))


def test_a_head_count_that_does_not_divide_the_width_names_the_flag():
    args = NoiseGeneratorArguments(ng_heads=3)
    check_generator_flags(args)  # fine on its own; the model's width decides
    with pytest.raises(ValueError, match=r"^--ng_heads 3 does not fit: the model's hidden size 64 is not divisible"):
        args.to_config(hidden_size=64)


# --- flags accepted but not used ------------------------------------------------------------------------------------
def llava_flags(tiny_world, tmp_path, *extra):
    from llava_noise.train.args import DataArguments, ModelArguments, TrainingArguments

    argv = ["--model_name_or_path", tiny_world["llava_llm"], "--vision_tower", tiny_world["llava_vision_tower"],
            "--data_path", "unused.json", "--output_dir", str(tmp_path), "--use_cpu", "True", "--report_to", "none",
            *extra]
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, NoiseGeneratorArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def qwen_flags(tiny_world, tmp_path, *extra):
    from qwen_noise.train.args import DataArguments, ModelArguments, TrainingArguments

    argv = ["--model_name_or_path", tiny_world["qwen_model"], "--data_path", "unused.json", "--output_dir",
            str(tmp_path), "--use_cpu", "True", "--report_to", "none", *extra]
    parser = HfArgumentParser((ModelArguments, DataArguments, NoiseGeneratorArguments, TrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def llava_combination_warnings(tiny_world, tmp_path, caplog, *extra) -> list[str]:
    from llava_noise.train.args import check_flag_combinations

    with caplog.at_level(logging.WARNING, logger=FLAGS_LOGGER):
        model_args, _, training_args, ng_args = llava_flags(tiny_world, tmp_path, *extra)
        check_flag_combinations(model_args, training_args, ng_args)
    return [r.getMessage() for r in caplog.records if r.name == FLAGS_LOGGER]


def qwen_combination_warnings(tiny_world, tmp_path, caplog, *extra) -> list[str]:
    from qwen_noise.train.args import check_flag_combinations

    with caplog.at_level(logging.WARNING, logger=FLAGS_LOGGER):
        model_args, _, ng_args, training_args = qwen_flags(tiny_world, tmp_path, *extra)
        check_flag_combinations(model_args, training_args, ng_args)
    return [r.getMessage() for r in caplog.records if r.name == FLAGS_LOGGER]


@pytest.mark.parametrize("flag, value, pattern", [
    ("--lora_weight_path", "old_run/adapter", r"--lora_weight_path 'old_run/adapter': loading LoRA weights into a new "
                                              r"run is not supported\. To continue a LoRA run pass its --output_dir"),
    ("--mm_patch_merge_type", "spatial_unpad", r"--mm_patch_merge_type 'spatial_unpad': only flat \(LLaVA-1\.5\)"),
    ("--quant_type", "int4", r"--quant_type 'int4' is not supported; use nf4 or fp4"),
])
def test_llava_refuses_flags_it_would_silently_ignore(tiny_world, tmp_path, flag, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        llava_flags(tiny_world, tmp_path, flag, value)


def test_llava_refuses_a_projector_lr_for_a_frozen_projector(tiny_world, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"--mm_projector_lr is set but --freeze_mm_mlp_adapter True keeps the "
                                         r"projector frozen"):
        llava_combination_warnings(tiny_world, tmp_path, caplog, "--mm_projector_lr", "2e-5",
                                   "--freeze_mm_mlp_adapter", "True")


@pytest.mark.parametrize("extra, expected", [
    (["--is_multimodal", "True"], ["--is_multimodal True is ignored: every run with --vision_tower is multimodal"]),
    (["--mpt_attn_impl", "torch"], ["--mpt_attn_impl torch is ignored: there is no MPT backbone here"]),
    (["--lora_r", "8", "--lora_dropout", "0.1"], ["--lora_r 8 is ignored: it applies with --lora_enable True only.",
                                                  "--lora_dropout 0.1 is ignored: it applies with --lora_enable True"]),
    (["--double_quant", "False"], ["--double_quant False is ignored: it applies to --bits 4 only."]),
    (["--ng_heads", "4", "--ng_lr", "1e-3"], ["--ng_heads 4 is ignored: it applies with --noise_generator True only.",
                                              "--ng_lr 0.001 is ignored: it applies with --noise_generator True"]),
])
def test_llava_warns_about_each_flag_it_ignores(tiny_world, tmp_path, caplog, extra, expected):
    warnings = llava_combination_warnings(tiny_world, tmp_path, caplog, *extra)
    assert len(warnings) == len(expected)
    for warning, start in zip(warnings, expected):
        assert warning.startswith(start), warning


def test_llava_recipe_flags_raise_no_warning(tiny_world, tmp_path, caplog):
    recipe = ["--lora_enable", "True", "--lora_r", "32", "--lora_alpha", "64", "--mm_projector_lr", "2e-5",
              "--noise_generator", "True", "--ng_heads", "4", "--ng_lr", "5e-4", "--bits", "4", "--double_quant",
              "True", "--quant_type", "nf4", "--lazy_preprocess", "True", "--mm_patch_merge_type", "flat"]
    assert llava_combination_warnings(tiny_world, tmp_path, caplog, *recipe) == []


def test_qwen_refuses_training_the_vision_tower_outside_a_full_tune(tiny_world, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"--tune_vision_tower True needs --tune full \(with --tune noise the vision "
                                         r"tower stays frozen\)"):
        qwen_combination_warnings(tiny_world, tmp_path, caplog, "--tune", "noise", "--tune_vision_tower", "True")


@pytest.mark.parametrize("extra, expected", [
    (["--tune", "noise", "--lora_r", "8"], ["--lora_r 8 is ignored: --tune noise puts no LoRA on the model."]),
    (["--tune", "lora", "--ng_heads", "4"], ["--ng_heads 4 is ignored: --tune lora trains no noise generator."]),
    (["--tune", "noise_lora", "--lora_r", "8", "--ng_heads", "4"], []),
])
def test_qwen_warns_about_each_flag_its_tune_ignores(tiny_world, tmp_path, caplog, extra, expected):
    assert qwen_combination_warnings(tiny_world, tmp_path, caplog, *extra) == expected


@pytest.mark.parametrize("accelerator, use_cpu, expected", [(False, False, False), (True, True, False),
                                                            (True, False, True)])
def test_pinned_memory_is_asked_for_only_with_an_accelerator(tmp_path, monkeypatch, accelerator, use_cpu, expected):
    """Without an accelerator pinned memory does nothing and torch warns on every DataLoader."""
    import torch

    from mung.training.flags import TrainingArguments

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: accelerator)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=use_cpu, report_to="none")
    assert args.dataloader_pin_memory is expected
