#!/bin/bash
# Launcher of the recipes on transformers' own model classes (Qwen2.5-VL, any transformers VLM); sourced by
# scripts/qwen/_launch.sh and scripts/vlm/_launch.sh, which set TRAIN_MODULE, DEFAULT_MODEL_PATH (empty: MODEL_PATH is
# required, with MODEL_PATH_HELP saying what to pass), DEFAULT_MODEL_MAX_LENGTH and, after sourcing, backbone_args
# (flags of that backbone only).
# Picks the launcher from the hardware:
#   GPUs   -> deepspeed --num_gpus $NUM_GPUS -m $TRAIN_MODULE --deepspeed $DEEPSPEED_CONFIG, bf16, gradient
#             checkpointing (several nodes: deepspeed --hostfile $HOSTFILE, or torchrun --nnodes $NNODES
#             --node_rank $NODE_RANK on every node)
#   no GPU -> plain python (one process in all) or torchrun --nproc_per_node $NUM_GPUS [--nnodes ...] (gloo), float32,
#             no DeepSpeed unless DEEPSPEED_CONFIG is set, no gradient checkpointing, so the recipe runs on the tiny
#             world; OMP_NUM_THREADS (unless set) = cores / (processes x (1 + NUM_WORKERS)).
# python comes from the active virtual environment, else from the repository's .venv (see scripts/_launch_env.sh).
# Environment overrides: MODEL_PATH, DATA_PATH, IMAGE_FOLDER, OUTPUT_DIR, NUM_GPUS (processes per node; default 8 with
# GPUs, 1 without), NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, HOSTFILE (see scripts/_launch_env.sh), BATCH_SIZE
# (per device), GLOBAL_BATCH (default 128; gradient accumulation = GLOBAL_BATCH / (NNODES * NUM_GPUS * BATCH_SIZE)),
# GRAD_ACCUM, EPOCHS, MAX_STEPS, SAVE_STEPS, LOGGING_STEPS, MODEL_MAX_LENGTH, LR, NUM_WORKERS, DEEPSPEED_CONFIG,
# REPORT_TO, HAS_GPU (0/1, detected), EXTRA_ARGS (appended verbatim).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_launch_env.sh
use_repo_venv

if [ -z "${DEFAULT_MODEL_PATH:-}" ]; then
    MODEL_PATH=${MODEL_PATH:?${MODEL_PATH_HELP:-set MODEL_PATH to the folder of the model to tune}}
else
    MODEL_PATH=${MODEL_PATH:-$DEFAULT_MODEL_PATH}
fi
DATA_PATH=${DATA_PATH:-./playground/data/mmpr_v1_1_sft.jsonl}
IMAGE_FOLDER=${IMAGE_FOLDER:-}
backbone_args=()

if [ -z "${HAS_GPU:-}" ]; then
    if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        HAS_GPU=1
    else
        HAS_GPU=0
    fi
fi
check_nodes
if [ "$HAS_GPU" = "1" ]; then NUM_GPUS=${NUM_GPUS:-8}; else NUM_GPUS=${NUM_GPUS:-1}; fi
BATCH_SIZE=${BATCH_SIZE:-4}
GLOBAL_BATCH=${GLOBAL_BATCH:-128}
per_step=$(( NODES_IN_JOB * NUM_GPUS * BATCH_SIZE ))
GRAD_ACCUM=${GRAD_ACCUM:-$(( GLOBAL_BATCH / per_step > 0 ? GLOBAL_BATCH / per_step : 1 ))}

launch() {
    local zero_default="$1"; shift
    local image=(); if [ -n "$IMAGE_FOLDER" ]; then image=(--image_folder "$IMAGE_FOLDER"); fi
    local common=(
        --model_name_or_path "$MODEL_PATH"
        --data_path "$DATA_PATH"
        "${image[@]}"
        "${backbone_args[@]}"
        --output_dir "$OUTPUT_DIR"
        --num_train_epochs "${EPOCHS:-1}"
        --max_steps "${MAX_STEPS:--1}"
        --per_device_train_batch_size "$BATCH_SIZE"
        --gradient_accumulation_steps "$GRAD_ACCUM"
        --save_strategy steps
        --save_steps "${SAVE_STEPS:-500}"
        --save_total_limit "${SAVE_TOTAL_LIMIT:-2}"
        --logging_steps "${LOGGING_STEPS:-1}"
        --model_max_length "${MODEL_MAX_LENGTH:-$DEFAULT_MODEL_MAX_LENGTH}"
        --report_to "${REPORT_TO:-none}"
    )
    if [ "$HAS_GPU" = "1" ]; then
        launcher_for gpu "$NUM_GPUS" "$TRAIN_MODULE"
        "${launcher[@]}" --deepspeed "${DEEPSPEED_CONFIG:-$zero_default}" --bf16 True --tf32 True \
            --gradient_checkpointing True --dataloader_num_workers "${NUM_WORKERS:-4}" \
            "${common[@]}" "$@" ${EXTRA_ARGS:-}
    else
        local cpu=(--use_cpu True --dataloader_num_workers "${NUM_WORKERS:-0}")
        if [ -n "${DEEPSPEED_CONFIG:-}" ]; then cpu+=(--deepspeed "$DEEPSPEED_CONFIG"); fi
        default_cpu_threads "$NUM_GPUS" "${NUM_WORKERS:-0}"
        launcher_for cpu "$NUM_GPUS" "$TRAIN_MODULE"
        if [ "${launcher[0]}" = "torchrun" ]; then cpu+=(--ddp_backend gloo); fi
        "${launcher[@]}" "${cpu[@]}" "${common[@]}" "$@" ${EXTRA_ARGS:-}
    fi
}
