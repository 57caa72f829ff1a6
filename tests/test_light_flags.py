"""The flags' light homes agree with the heavy modules they stand in for: the noise modes and bad-sample choices of
``mung.flag_choices``, and ``--device auto`` (the default, so parsing needs no torch) resolved when the model loads."""

import argparse

import torch

import noise_generator
from mung import bad_samples, cli_args
from mung.flag_choices import NOISE_MODES, ON_BAD_SAMPLE


def test_the_noise_mode_choices_are_the_generators_modes():
    assert NOISE_MODES == noise_generator.MODES


def test_the_bad_sample_choices_are_the_ones_bad_samples_checks():
    assert bad_samples.ON_BAD_SAMPLE is ON_BAD_SAMPLE
    assert ON_BAD_SAMPLE == ("skip", "raise")


def test_device_auto_is_the_default_and_resolves_to_what_torch_sees():
    parser = argparse.ArgumentParser()
    cli_args.add_model_args(parser)
    args = parser.parse_args(["--model-path", "m"])
    assert args.device == "auto"
    assert cli_args.resolved_device(args.device) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cli_args.resolved_device("cpu") == "cpu"
