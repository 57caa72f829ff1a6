#!/bin/bash
# QLoRA baseline on Qwen2.5-VL: bitsandbytes NF4 LLM (merger and generator never quantised) + LoRA r 32, alpha 32,
# lr 1e-5, ZeRO-2. BITS=8 for int8; TUNE=noise_lora adds the generator. Tiny world: see finetune_noise.sh.
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/qwen2.5-vl-3b-qlora}

launch ./scripts/zero2.json \
    --tune "${TUNE:-lora}" --bits "${BITS:-4}" \
    --lora_r "${LORA_R:-32}" --lora_alpha "${LORA_ALPHA:-32}" --lora_dropout 0.05 \
    --learning_rate "${LR:-1e-5}" \
    --weight_decay 0. \
    --warmup_steps 0.03 \
    --lr_scheduler_type cosine
