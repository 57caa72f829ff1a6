"""Evaluation for every backbone: question readers and answering entry points (``model_vqa_loader``,
``model_vqa``, ``model_vqa_science``, ``model_vqa_mmbench``, ``run_llava``), benchmark scorers and converters."""
