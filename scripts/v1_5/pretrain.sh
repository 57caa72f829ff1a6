#!/bin/bash
# LLaVA-1.5 stage 1: train the mlp2x_gelu projector only (plain template, lr 1e-3, global batch 256, ZeRO-2).
# Writes mm_projector.bin. Tiny world: MODEL_PATH, VISION_TOWER, DATA_PATH, IMAGE_FOLDER, OUTPUT_DIR (see _launch.sh).
source "$(dirname "$0")/_launch.sh"
MODEL_PATH=${MODEL_PATH:-lmsys/vicuna-7b-v1.5}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
DATA_PATH=${DATA_PATH:-./playground/data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json}
IMAGE_FOLDER=${IMAGE_FOLDER:-./playground/data/LLaVA-Pretrain/images}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b-pretrain}
DEFAULT_BATCH_SIZE=32
DEFAULT_SAVE_STEPS=24000

launch ./scripts/zero2.json \
    --model_name_or_path "$MODEL_PATH" \
    --version plain \
    --data_path "$DATA_PATH" \
    --image_folder "$IMAGE_FOLDER" \
    --vision_tower "$VISION_TOWER" \
    --mm_projector_type mlp2x_gelu \
    --tune_mm_mlp_adapter True \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --learning_rate "${LR:-1e-3}" \
    --weight_decay 0. \
    --warmup_ratio 0.03 \
    --lr_scheduler_type cosine
