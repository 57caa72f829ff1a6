#!/bin/bash
# MuNG only: the noise generator on a trained LLaVA-1.5 (LLM and projector frozen). The authors' generator recipe:
# lr 5e-4, weight decay 0.1, beta2 0.95, warmup 1%, cosine, 8 heads, global batch 128, ZeRO-3.
# Writes config.json + noise_generator.safetensors (+ its config): load it with --model-base <the LLaVA model>.
# Tiny world: MODEL_PATH must be a full LLaVA checkpoint (e.g. the output of finetune.sh), plus VISION_TOWER,
# DATA_PATH, IMAGE_FOLDER, OUTPUT_DIR, NG_HEADS.
source "$(dirname "$0")/_launch.sh"
MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
VISION_TOWER=${VISION_TOWER:-openai/clip-vit-large-patch14-336}
DATA_PATH=${DATA_PATH:-./playground/data/llava_v1_5_mix665k.json}
IMAGE_FOLDER=${IMAGE_FOLDER:-./playground/data}
OUTPUT_DIR=${OUTPUT_DIR:-./checkpoints/llava-v1.5-7b-noise}
DEFAULT_BATCH_SIZE=16
DEFAULT_SAVE_STEPS=50000

launch ./scripts/zero3.json \
    --noise_generator True --ng_heads "${NG_HEADS:-8}" \
    --freeze_backbone True --freeze_mm_mlp_adapter True \
    --model_name_or_path "$MODEL_PATH" \
    --version v1 \
    --data_path "$DATA_PATH" \
    --image_folder "$IMAGE_FOLDER" \
    --vision_tower "$VISION_TOWER" \
    --mm_projector_type mlp2x_gelu \
    --mm_vision_select_layer -2 \
    --mm_use_im_start_end False \
    --mm_use_im_patch_token False \
    --image_aspect_ratio pad \
    --group_by_modality_length True \
    --learning_rate "${LR:-5e-4}" \
    --weight_decay 0.1 \
    --adam_beta2 0.95 \
    --warmup_ratio 0.01 \
    --lr_scheduler_type cosine
