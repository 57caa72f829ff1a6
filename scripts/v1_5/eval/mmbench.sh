#!/bin/bash
# MMBench dev (TSV with base64 images) → submission xlsx; circular evaluation is done by the MMBench server.
source "$(dirname "$0")/_common.sh"
SPLIT="${SPLIT:-mmbench_dev_20230712}"
B="$DATA_ROOT/mmbench"
require "$B/$SPLIT.tsv"
run_chunked llava_noise.eval.model_vqa_mmbench "$B/answers/$SPLIT/$CKPT" "$B/answers/$SPLIT/$CKPT.jsonl" \
    --question-file "$B/$SPLIT.tsv" --single-pred-prompt --lang en --temperature 0
"$PYTHON" -m mung.eval.convert_mmbench_for_submission --annotation-file "$B/$SPLIT.tsv" \
    --result-dir "$B/answers/$SPLIT" --upload-dir "$B/answers_upload/$SPLIT" --experiment "$CKPT"
