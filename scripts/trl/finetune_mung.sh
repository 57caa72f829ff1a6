#!/bin/bash
# MuNG (or MuNG + LoRA) on any transformers VLM with TRL's SFTTrainer and peft_config=MuNGConfig
# (python -m vlm_noise.train.trl_sft): the adapter is saved in peft's format (adapter_config.json +
# adapter_model.safetensors) and loads with PeftModel.from_pretrained or any command of the project (--model-path).
# GPUs: deepspeed (ZeRO-3, bf16, gradient checkpointing); no GPU: plain python in float32 (the tiny world).
# Environment: MODEL_PATH (required), DATA_PATH, IMAGE_FOLDER, OUTPUT_DIR, MUNG (MuNGConfig settings as JSON; e.g.
# '{"num_heads": 8, "lora_r": 32, "lora_alpha": 32}'), LR, MAX_STEPS, EPOCHS, BATCH_SIZE, GRAD_ACCUM, NUM_GPUS,
# DEEPSPEED_CONFIG, EXTRA_ARGS (TRL SFTConfig flags, appended verbatim). Tiny world (CPU):
#   MODEL_PATH=TW_families/gemma3 DATA_PATH=TW/data/qwen_shift_train.json IMAGE_FOLDER=TW/images \
#   OUTPUT_DIR=/tmp/gemma3-trl MUNG='{"num_heads": 4}' MAX_STEPS=30 LR=1e-2 bash scripts/trl/finetune_mung.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/_launch_env.sh
use_repo_venv

MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to the folder of the VLM to tune (any family vlm_noise supports)}
DATA_PATH=${DATA_PATH:-./playground/data/mmpr_v1_1_sft.jsonl}
image=(); if [ -n "${IMAGE_FOLDER:-}" ]; then image=(--image_folder "$IMAGE_FOLDER"); fi
common=(
    --model_name_or_path "$MODEL_PATH" --data_path "$DATA_PATH" "${image[@]}"
    --output_dir "${OUTPUT_DIR:-./checkpoints/vlm-mung-trl}" --mung "${MUNG:-{\"num_heads\": 8\}}"
    --learning_rate "${LR:-5e-4}" --num_train_epochs "${EPOCHS:-1}" --max_steps "${MAX_STEPS:--1}"
    --per_device_train_batch_size "${BATCH_SIZE:-4}" --gradient_accumulation_steps "${GRAD_ACCUM:-1}"
    --weight_decay 0.1 --adam_beta2 0.95 --warmup_steps 0.01 --lr_scheduler_type cosine
    --logging_steps 1 --save_strategy steps --save_steps "${SAVE_STEPS:-500}" --report_to "${REPORT_TO:-none}"
)
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    deepspeed --num_gpus "${NUM_GPUS:-8}" --module vlm_noise.train.trl_sft --deepspeed "${DEEPSPEED_CONFIG:-./scripts/zero3.json}" \
        --bf16 True --gradient_checkpointing True "${common[@]}" ${EXTRA_ARGS:-}
else
    default_cpu_threads 1 0
    python -m vlm_noise.train.trl_sft --use_cpu True --bf16 False "${common[@]}" ${EXTRA_ARGS:-}
fi
