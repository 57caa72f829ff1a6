#!/bin/bash
# LLaVA-1.5 stage 2 with LoRA (r 128, alpha 256, lr 2e-4, projector lr 2e-5, global batch 128, ZeRO-3).
# Writes adapter + non_lora_trainables.bin. Tiny world: see finetune.sh; LORA_R / LORA_ALPHA override the rank.
source "$(dirname "$0")/_launch.sh"
MODEL_PATH=${MODEL_PATH:-lmsys/vicuna-7b-v1.5}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
PRETRAIN_MM_MLP_ADAPTER=${PRETRAIN_MM_MLP_ADAPTER-./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin}
DATA_PATH=${DATA_PATH:-./playground/data/llava_v1_5_mix665k.json}
IMAGE_FOLDER=${IMAGE_FOLDER:-./playground/data}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b-lora}
DEFAULT_BATCH_SIZE=16
DEFAULT_SAVE_STEPS=50000
adapter=(); if [ -n "$PRETRAIN_MM_MLP_ADAPTER" ]; then adapter=(--pretrain_mm_mlp_adapter "$PRETRAIN_MM_MLP_ADAPTER"); fi

launch ./scripts/zero3.json \
    --lora_enable True --lora_r "${LORA_R:-128}" --lora_alpha "${LORA_ALPHA:-256}" --mm_projector_lr 2e-5 \
    --model_name_or_path "$MODEL_PATH" \
    --version v1 \
    --data_path "$DATA_PATH" \
    --image_folder "$IMAGE_FOLDER" \
    --vision_tower "$VISION_TOWER" \
    "${adapter[@]}" \
    --mm_projector_type mlp2x_gelu \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --image_aspect_ratio pad \
    --group_by_modality_length True \
    --learning_rate "${LR:-2e-4}" \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type cosine
