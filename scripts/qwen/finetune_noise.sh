#!/bin/bash
# MuNG on Qwen2.5-VL (the paper's recipe): frozen MLLM, 8-head cross-attention generator; lr 5e-4, wd 0.1, beta2 0.95,
# warmup 1%, cosine, 1 epoch, global batch 128, max length 1024, images <= 504x504, bf16, ZeRO-3.
# Writes generator-only checkpoints (+ processor). Tiny world (CPU):
#   MODEL_PATH=<world>/qwen/qwen2_5_vl-tiny DATA_PATH=<world>/data/qwen_train.json IMAGE_FOLDER=<world>/images \
#   OUTPUT_DIR=/tmp/qwen-mung MAX_STEPS=30 BATCH_SIZE=4 GLOBAL_BATCH=4 bash scripts/qwen/finetune_noise.sh
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/qwen2.5-vl-3b-mung}

launch ./scripts/zero3.json \
    --tune "${TUNE:-noise}" \
    --ng_heads "${NG_HEADS:-8}" \
    --learning_rate "${LR:-5e-4}" \
    --weight_decay 0.1 \
    --adam_beta2 0.95 \
    --warmup_steps 0.01 \
    --lr_scheduler_type cosine
