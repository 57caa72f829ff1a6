#!/bin/bash
# The paper's comparison on Qwen2.5-VL-3B-Instruct and MMPR-v1.1 (GPUs): every method of `python -m mung.compare`
# (base, full FT, LoRA r32, DoRA r32, MuNG, MuNG+LoRA r32, LoRA r128 and the generator ablations) trained by its
# recipe in scripts/qwen/ with the paper's settings (1 epoch, global batch 128, each recipe's learning rate), then
# every checkpoint evaluated by the benchmark scripts in scripts/v1_5/eval/ (any backbone's checkpoint).
#   MODEL_PATH  start checkpoint (Qwen/Qwen2.5-VL-3B-Instruct)   DATA_PATH  MMPR-v1.1 converted with
#   IMAGE_FOLDER  MMPR images                                               python -m qwen_noise.data.convert_mmpr
#   OUT  comparison folder (./checkpoints/compare/qwen2.5-vl-3b)  PLAN  main | ablation | all (all)   SEEDS (1)
#   METHODS  comma-separated subset (default: every method of PLAN)   BENCHMARKS  scripts/v1_5/eval/<name>.sh to run
#   NUM_GPUS, BATCH_SIZE, GLOBAL_BATCH, ... as in scripts/qwen/_launch.sh (the recipes read them).
# Several nodes: HOSTFILE (and MASTER_ADDR, MASTER_PORT), run on node 0; each recipe's deepspeed launcher starts the
# other nodes (scripts/_launch_env.sh).
# Rerunning resumes: finished trainings (OUT/units/<method>/seed<k>/result.json) and benchmarks are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/_launch_env.sh
use_repo_venv
check_driver_nodes
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}
DATA_PATH=${DATA_PATH:-./playground/data/mmpr_v1_1_sft.jsonl}
IMAGE_FOLDER=${IMAGE_FOLDER:-./playground/data/MMPR-v1.1/images}
OUT=${OUT:-./checkpoints/compare/qwen2.5-vl-3b}
BENCHMARKS=${BENCHMARKS:-mme pope mmbench gqa textvqa}
methods=(); if [ -n "${METHODS:-}" ]; then methods=(--methods "$METHODS"); fi

python -m mung.compare --backbone qwen --plan "${PLAN:-all}" --seeds "${SEEDS:-1}" "${methods[@]}" \
    --start "$MODEL_PATH" --train-data "$DATA_PATH" --image-folder "$IMAGE_FOLDER" --out "$OUT"
bash scripts/compare_benchmarks.sh "$OUT" $BENCHMARKS
