#!/bin/bash
# POPE (COCO val2014) → accuracy, precision, recall, F1, yes-ratio per category and averaged.
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/pope"
require "$B/llava_pope_test.jsonl" "$B/val2014" "$B/coco"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava_pope_test.jsonl" --image-folder "$B/val2014" --temperature 0
"$PYTHON" -m mung.eval.eval_pope --annotation-dir "$B/coco" --question-file "$B/llava_pope_test.jsonl" \
    --result-file "$B/answers/$CKPT.jsonl" --output-file "$B/answers/${CKPT}_scores.json"
