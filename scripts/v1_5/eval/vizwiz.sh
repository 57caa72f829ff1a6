#!/bin/bash
# VizWiz test → submission file (scored on the server).
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/vizwiz"
require "$B/llava_test.jsonl" "$B/test"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava_test.jsonl" --image-folder "$B/test" --temperature 0
"$PYTHON" -m mung.eval.convert_vizwiz_for_submission --annotation-file "$B/llava_test.jsonl" \
    --result-file "$B/answers/$CKPT.jsonl" --result-upload-file "$B/answers_upload/$CKPT.json"
