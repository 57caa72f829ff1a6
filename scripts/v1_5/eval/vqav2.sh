#!/bin/bash
# VQAv2 test-dev → EvalAI submission file (scored on the server).
source "$(dirname "$0")/_common.sh"
SPLIT="${SPLIT:-llava_vqav2_mscoco_test-dev2015}"
B="$DATA_ROOT/vqav2"
require "$B/$SPLIT.jsonl" "$B/test2015" "$B/llava_vqav2_mscoco_test2015.jsonl"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$SPLIT/$CKPT" "$B/answers/$SPLIT/$CKPT/merge.jsonl" \
    --question-file "$B/$SPLIT.jsonl" --image-folder "$B/test2015" --temperature 0
"$PYTHON" -m mung.eval.convert_vqav2_for_submission --dir "$B" --split "$SPLIT" --ckpt "$CKPT"
