# Sourced by every scripts/v1_5/eval/<bench>.sh: settings from the environment and the chunked runner.
#
#   MODEL_PATH  checkpoint folder (required)           CKPT        answers name (default: basename of MODEL_PATH)
#   MODEL_BASE  base LLM for LoRA / projector-only     DATA_ROOT   benchmark data (default ./playground/data/eval)
#   CONV_MODE   conversation template (vicuna_v1)      NOISE_MODE  sample|mean|off (default: the checkpoint's)
#   SEED        --seed for sample mode (0)             PYTHON      interpreter (python)
#   EXTRA_ARGS  more flags for the inference script, e.g. "--batch-size 8"
# GPUs: one chunk per GPU in CUDA_VISIBLE_DEVICES (or per GPU nvidia-smi lists), run in parallel and merged
# in order; with no GPU, one chunk on the CPU (float32).
# Scorers and converters: the shared `python -m mung.eval.<name>` modules; they score any backbone's answers file.
set -euo pipefail

: "${MODEL_PATH:?set MODEL_PATH to the checkpoint folder, e.g. MODEL_PATH=./checkpoints/llava-v1.5-7b-mung}"
CKPT="${CKPT:-$(basename "${MODEL_PATH%/}")}"
MODEL_BASE="${MODEL_BASE:-}"
DATA_ROOT="${DATA_ROOT:-./playground/data/eval}"
CONV_MODE="${CONV_MODE:-vicuna_v1}"
NOISE_MODE="${NOISE_MODE:-}"
SEED="${SEED:-0}"
PYTHON="${PYTHON:-python}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

MODEL_ARGS=(--model-path "$MODEL_PATH" --conv-mode "$CONV_MODE" --seed "$SEED")
if [ -n "$MODEL_BASE" ]; then MODEL_ARGS+=(--model-base "$MODEL_BASE"); fi
if [ -n "$NOISE_MODE" ]; then MODEL_ARGS+=(--noise-mode "$NOISE_MODE"); fi
read -ra EXTRA <<< "$EXTRA_ARGS"

if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    IFS=',' read -ra GPULIST <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    mapfile -t GPULIST < <(seq 0 $(( $(nvidia-smi -L | wc -l) - 1 )))
else
    GPULIST=()
fi

require() {  # require PATH... : stop with a clear message when benchmark data is missing
    for p in "$@"; do
        if [ ! -e "$p" ]; then
            echo "missing $p — see playground/data/README.md for the layout of $DATA_ROOT" >&2
            exit 1
        fi
    done
}

# run_chunked MODULE CHUNK_DIR MERGED_FILE [script flags...]
# Runs `python -m MODULE` once per chunk (answers in CHUNK_DIR/<chunks>_<idx>.jsonl), then concatenates the
# chunks in order into MERGED_FILE.
run_chunked() {
    local module=$1 chunk_dir=$2 merged=$3
    shift 3
    mkdir -p "$chunk_dir" "$(dirname "$merged")"
    local chunks=${#GPULIST[@]} pids=() idx
    if [ "$chunks" -eq 0 ]; then
        "$PYTHON" -m "$module" "$@" "${MODEL_ARGS[@]}" "${EXTRA[@]}" --device cpu \
            --answers-file "$chunk_dir/1_0.jsonl" --num-chunks 1 --chunk-idx 0
        chunks=1
    else
        for idx in $(seq 0 $((chunks - 1))); do
            CUDA_VISIBLE_DEVICES="${GPULIST[$idx]}" "$PYTHON" -m "$module" "$@" "${MODEL_ARGS[@]}" "${EXTRA[@]}" \
                --answers-file "$chunk_dir/${chunks}_${idx}.jsonl" --num-chunks "$chunks" --chunk-idx "$idx" &
            pids+=($!)
        done
        for idx in "${!pids[@]}"; do
            wait "${pids[$idx]}" || { echo "chunk $idx of $module failed" >&2; exit 1; }
        done
    fi
    : > "$merged"
    for idx in $(seq 0 $((chunks - 1))); do
        cat "$chunk_dir/${chunks}_${idx}.jsonl" >> "$merged"
    done
    echo "answers: $merged"
}
