#!/bin/bash
# SEED-Bench (image questions; video questions need frames extracted under seed_bench/SEED-Bench-video-image)
# → per-type accuracy and the upload file.
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/seed_bench"
require "$B/llava-seed-bench.jsonl" "$B/SEED-Bench.json"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$CKPT" "$B/answers/$CKPT/merge.jsonl" \
    --question-file "$B/llava-seed-bench.jsonl" --image-folder "$B" --temperature 0
"$PYTHON" -m mung.eval.convert_seed_for_submission --annotation-file "$B/SEED-Bench.json" \
    --result-file "$B/answers/$CKPT/merge.jsonl" --result-upload-file "$B/answers_upload/$CKPT.jsonl"
