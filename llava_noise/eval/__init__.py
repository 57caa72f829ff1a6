"""Evaluation for LLaVA-1.5 + MuNG: inference scripts (``model_vqa*``, ``run_llava``) and benchmark scorers.

Every script runs as ``python -m llava_noise.eval.<name>``; shared pieces live in ``llava_noise.jsonl``
(reading/writing JSON and answer files, also used by training), ``chunking`` (``--num-chunks/--chunk-idx``), ``vqa_normalize`` (VQA answer normalisation and
accuracy) and ``inference`` (prompt building, image tensors, batched greedy generation).
"""
