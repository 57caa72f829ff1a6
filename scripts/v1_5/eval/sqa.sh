#!/bin/bash
# ScienceQA test (model_vqa_science, single-prediction prompt) → accuracy and IMG-accuracy.
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/scienceqa"
require "$B/llava_test_CQM-A.json" "$B/images/test" "$B/problems.json" "$B/pid_splits.json"
run_chunked llava_noise.eval.model_vqa_science "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava_test_CQM-A.json" --image-folder "$B/images/test" --single-pred-prompt --temperature 0
"$PYTHON" -m mung.eval.eval_science_qa --base-dir "$B" --result-file "$B/answers/$CKPT.jsonl" \
    --output-file "$B/answers/${CKPT}_output.json" --output-result "$B/answers/${CKPT}_result.json"
