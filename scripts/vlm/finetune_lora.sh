#!/bin/bash
# LoRA baseline on any transformers VLM (the paper's Qwen LoRA recipe): r 32, alpha 32, lr 1e-5 on the language
# model's linears, global batch 128, ZeRO-2. TUNE=noise_lora trains the generator jointly (NG_LR sets its own lr).
# Tiny world: see finetune_noise.sh.
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/vlm-lora}
ng_lr=(); if [ -n "${NG_LR:-}" ]; then ng_lr=(--ng_lr "$NG_LR"); fi

launch ./scripts/zero2.json \
    --tune "${TUNE:-lora}" \
    --lora_r "${LORA_R:-32}" --lora_alpha "${LORA_ALPHA:-32}" --lora_dropout 0.05 \
    "${ng_lr[@]}" \
    --learning_rate "${LR:-1e-5}" \
    --weight_decay 0. \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine
