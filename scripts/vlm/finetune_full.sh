#!/bin/bash
# Full fine-tuning baseline on any transformers VLM: language model, output head and vision-to-text connector
# (vision encoder frozen; EXTRA_ARGS="--tune_vision_tower True" to train it), lr 1e-6, global batch 128, ZeRO-3.
# Tiny world: see finetune_noise.sh.
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/vlm-full}

launch ./scripts/zero3.json \
    --tune full \
    --learning_rate "${LR:-1e-6}" \
    --weight_decay 0. \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine
