#!/bin/bash
# MuNG on any transformers VLM with the paper's Qwen recipe: frozen VLM, 8-head cross-attention generator; lr 5e-4,
# wd 0.1, beta2 0.95, warmup 1%, cosine, 1 epoch, global batch 128, bf16, ZeRO-3. TUNE=noise_lora adds LoRA on the
# language model (LORA_R, LORA_ALPHA; NG_LR sets the generator's own lr). Writes generator-only checkpoints
# (+ processor; with LoRA + the adapter). Tiny world (CPU), after `python -m tiny_world --out TW --families all`:
#   MODEL_PATH=TW/families/gemma3 DATA_PATH=TW/data/qwen_train.json IMAGE_FOLDER=TW/images \
#   OUTPUT_DIR=/tmp/gemma3-mung MAX_STEPS=30 BATCH_SIZE=4 GLOBAL_BATCH=4 NG_HEADS=4 LR=1e-2 bash scripts/vlm/finetune_noise.sh
source "$(dirname "$0")/_launch.sh"
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/vlm-mung}
TUNE=${TUNE:-noise}
ng_lr=(); if [ -n "${NG_LR:-}" ]; then ng_lr=(--ng_lr "$NG_LR"); fi
lora=(); if [ "$TUNE" = "noise_lora" ]; then lora=(--lora_r "${LORA_R:-32}" --lora_alpha "${LORA_ALPHA:-32}"); fi

launch ./scripts/zero3.json \
    --tune "$TUNE" \
    --ng_heads "${NG_HEADS:-8}" \
    "${ng_lr[@]}" \
    "${lora[@]}" \
    --learning_rate "${LR:-5e-4}" \
    --weight_decay 0.1 \
    --adam_beta2 0.95 \
    --warmup_steps 0.01 \
    --lr_scheduler_type cosine
