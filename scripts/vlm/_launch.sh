#!/bin/bash
# Launcher of the recipes for any transformers VLM (sourced, not run): scripts/_launch_hf.sh (hardware, DeepSpeed,
# environment overrides) with vlm_noise.train.train and max length 2048. MODEL_PATH is required: the VLM folder, e.g.
# a downloaded Gemma 3, Qwen3-VL, SmolVLM, InternVL, ...
TRAIN_MODULE=vlm_noise.train.train
DEFAULT_MODEL_PATH=
MODEL_PATH_HELP="set MODEL_PATH to the folder of the VLM to tune (any family vlm_noise supports)"
DEFAULT_MODEL_MAX_LENGTH=2048
source "$(dirname "${BASH_SOURCE[0]}")/../_launch_hf.sh"
