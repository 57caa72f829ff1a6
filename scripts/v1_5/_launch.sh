#!/bin/bash
# Shared launcher of the v1.5 recipes (sourced, not run). Picks the launcher from the hardware:
#   GPUs  -> deepspeed --num_gpus $NUM_GPUS -m llava_noise.train.train_mem --deepspeed $DEEPSPEED_CONFIG, bf16, tf32
#            (several nodes: deepspeed --hostfile $HOSTFILE, or torchrun --nnodes $NNODES --node_rank $NODE_RANK)
#   no GPU -> plain python (one process in all) or torchrun --nproc_per_node $NUM_GPUS [--nnodes ...] (gloo), float32,
#            no DeepSpeed unless DEEPSPEED_CONFIG is set explicitly; OMP_NUM_THREADS (unless set) = cores /
#            (processes x (1 + NUM_WORKERS)).
# python comes from the active virtual environment, else from the repository's .venv (see scripts/_launch_env.sh).
# Environment overrides shared by every recipe: NUM_GPUS (processes per node), NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT, HOSTFILE (see scripts/_launch_env.sh), BATCH_SIZE (per device), GRAD_ACCUM, EPOCHS, MAX_STEPS,
# SAVE_STEPS, LOGGING_STEPS, MODEL_MAX_LENGTH, NUM_WORKERS, GRADIENT_CHECKPOINTING, REPORT_TO, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/_launch_env.sh
use_repo_venv

if [ -z "${HAS_GPU:-}" ]; then
    if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        HAS_GPU=1
    else
        HAS_GPU=0
    fi
fi
check_nodes

launch() {
    local zero_default="$1"; shift
    local common=(
        --num_train_epochs "${EPOCHS:-1}"
        --max_steps "${MAX_STEPS:--1}"
        --per_device_train_batch_size "${BATCH_SIZE:-$DEFAULT_BATCH_SIZE}"
        --per_device_eval_batch_size 4
        --gradient_accumulation_steps "${GRAD_ACCUM:-1}"
        --eval_strategy no
        --save_strategy steps
        --save_steps "${SAVE_STEPS:-$DEFAULT_SAVE_STEPS}"
        --save_total_limit "${SAVE_TOTAL_LIMIT:-1}"
        --logging_steps "${LOGGING_STEPS:-1}"
        --model_max_length "${MODEL_MAX_LENGTH:-2048}"
        --lazy_preprocess True
        --report_to "${REPORT_TO:-none}"
        --output_dir "$OUTPUT_DIR"
    )
    if [ "$HAS_GPU" = "1" ]; then
        launcher_for gpu "${NUM_GPUS:-8}" llava_noise.train.train_mem
        "${launcher[@]}" --deepspeed "${DEEPSPEED_CONFIG:-$zero_default}" --bf16 True --tf32 True \
            --gradient_checkpointing "${GRADIENT_CHECKPOINTING:-True}" \
            --dataloader_num_workers "${NUM_WORKERS:-4}" \
            "${common[@]}" "$@" ${EXTRA_ARGS:-}
    else
        local cpu=(--use_cpu True --gradient_checkpointing "${GRADIENT_CHECKPOINTING:-False}"
                   --dataloader_num_workers "${NUM_WORKERS:-0}")
        if [ -n "${DEEPSPEED_CONFIG:-}" ]; then cpu+=(--deepspeed "$DEEPSPEED_CONFIG"); fi
        default_cpu_threads "${NUM_GPUS:-1}" "${NUM_WORKERS:-0}"
        launcher_for cpu "${NUM_GPUS:-1}" llava_noise.train.train
        if [ "${launcher[0]}" = "torchrun" ]; then cpu+=(--ddp_backend gloo); fi
        "${launcher[@]}" "${cpu[@]}" "${common[@]}" "$@" ${EXTRA_ARGS:-}
    fi
}
