"""Interactive serving for Qwen2.5-VL + MuNG."""
