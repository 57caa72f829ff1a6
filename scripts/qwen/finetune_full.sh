#!/bin/bash
# Full fine-tuning baseline on Qwen2.5-VL: LLM + merger (vision tower frozen; EXTRA_ARGS="--tune_vision_tower True"
# to train it), lr 1e-6, global batch 128, ZeRO-3. Tiny world: see finetune_noise.sh.
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/qwen2.5-vl-3b-full}

launch ./scripts/zero3.json \
    --tune full \
    --learning_rate "${LR:-1e-6}" \
    --weight_decay 0. \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine
