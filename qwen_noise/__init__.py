"""MuNG on Qwen2.5-VL.

Layout: ``model`` (config, modeling with the noise on the merger output, one loader), ``data`` (records, chat-template
rendering shared by training and inference, collator, MMPR conversion), ``train`` (flags, Trainer, entry point),
``eval.model_vqa_loader``, ``serve.cli`` and ``vlmeval`` (VLMEvalKit model class). Recipes: ``scripts/qwen/``.
"""

import mung  # noqa: F401  (first: its import filters the expected log lines of the dependencies)
