#!/bin/bash
# The paper's comparison on LLaVA-1.5-7B and the 665k instruction mix (GPUs): every method of `python -m mung.compare`
# trained by its recipe in scripts/v1_5/ with the paper's settings (1 epoch, global batch 128, each recipe's
# learning rate) from Vicuna-7B + the pretrained projector (LLaVA-1.5's stage 2), then every checkpoint evaluated by
# the benchmark scripts in scripts/v1_5/eval/.
# "base" and "MuNG" (generator alone) are left out by default: from Vicuna + a projector there is no instruction-
# tuned model to evaluate or to keep frozen (the paper pairs the generator with LoRA on LLaVA: MuNG+LoRA r32).
#   MODEL_PATH (lmsys/vicuna-7b-v1.5)  PROJECTOR (./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin)
#   DATA_PATH (./playground/data/llava_v1_5_mix665k.json)  IMAGE_FOLDER (./playground/data)  VISION_TOWER
#   OUT (./checkpoints/compare/llava-v1.5-7b)  PLAN (all)  SEEDS (1)  METHODS  BENCHMARKS (scripts/v1_5/eval/*.sh)
#   NUM_GPUS, BATCH_SIZE, GRAD_ACCUM, ... as in scripts/v1_5/_launch.sh (the recipes read them).
# Several nodes: HOSTFILE (and MASTER_ADDR, MASTER_PORT), run on node 0; each recipe's deepspeed launcher starts the
# other nodes (scripts/_launch_env.sh).
# Rerunning resumes: finished trainings and benchmark score files are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/_launch_env.sh
use_repo_venv
check_driver_nodes
MODEL_PATH=${MODEL_PATH:-lmsys/vicuna-7b-v1.5}
PROJECTOR=${PROJECTOR:-./checkpoints/llava-v1.5-7b-pretrain/mm_projector.bin}
DATA_PATH=${DATA_PATH:-./playground/data/llava_v1_5_mix665k.json}
IMAGE_FOLDER=${IMAGE_FOLDER:-./playground/data}
OUT=${OUT:-./checkpoints/compare/llava-v1.5-7b}
BENCHMARKS=${BENCHMARKS:-gqa pope mme mmbench textvqa sqa}
METHODS=${METHODS:-full FT,LoRA r32,DoRA r32,MuNG+LoRA r32,LoRA r128,MLP generator,multiplicative,no sampling (mu only),Gaussian noise,no answer conditioning}

python -m mung.compare --backbone llava --plan "${PLAN:-all}" --seeds "${SEEDS:-1}" --methods "$METHODS" \
    --start "$MODEL_PATH" --start-projector "$PROJECTOR" --train-data "$DATA_PATH" --image-folder "$IMAGE_FOLDER" \
    --out "$OUT"
bash scripts/compare_benchmarks.sh "$OUT" $BENCHMARKS
