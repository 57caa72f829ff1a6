"""Training entry point, flags and Trainer of Qwen2.5-VL + MuNG."""
