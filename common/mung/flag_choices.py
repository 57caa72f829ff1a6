"""The choices of command-line flags, in a module that imports nothing heavy: building a parser (and printing its
``--help``) must not import torch, transformers or gradio (docs/architecture.md, "Entry points")."""

# The noise modes of noise_generator.config.MODES: that package imports torch, so the flags keep their own copy
# (tests/test_mung_command.py checks the two are equal).
NOISE_MODES = ("sample", "mean", "off")

# What to do with a sample that cannot be used (mung.bad_samples reads it from here).
ON_BAD_SAMPLE = ("skip", "raise")
