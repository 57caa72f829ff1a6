#!/bin/bash
# Launcher of the Qwen2.5-VL recipes (sourced, not run): scripts/_launch_hf.sh (hardware, DeepSpeed, environment
# overrides) with qwen_noise.train.train, Qwen2.5-VL-3B-Instruct by default, max length 1024 and the paper's image
# size: MAX_PIXELS (default 504 x 504), MIN_PIXELS.
TRAIN_MODULE=qwen_noise.train.train
DEFAULT_MODEL_PATH=Qwen/Qwen2.5-VL-3B-Instruct
DEFAULT_MODEL_MAX_LENGTH=1024
source "$(dirname "${BASH_SOURCE[0]}")/../_launch_hf.sh"
backbone_args=(--max_pixels "${MAX_PIXELS:-254016}")
if [ -n "${MIN_PIXELS:-}" ]; then backbone_args+=(--min_pixels "$MIN_PIXELS"); fi
