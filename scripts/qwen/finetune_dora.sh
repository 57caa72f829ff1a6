#!/bin/bash
# DoRA baseline on Qwen2.5-VL: as finetune_lora.sh with weight-decomposed LoRA. Tiny world: see finetune_noise.sh.
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/qwen2.5-vl-3b-dora}

launch ./scripts/zero2.json \
    --tune dora \
    --lora_r "${LORA_R:-32}" --lora_alpha "${LORA_ALPHA:-32}" --lora_dropout 0.05 \
    --learning_rate "${LR:-1e-5}" \
    --weight_decay 0. \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine
