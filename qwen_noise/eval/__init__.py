"""Evaluation scripts for Qwen2.5-VL + MuNG."""
