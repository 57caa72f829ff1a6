#!/bin/bash
# MM-Vet → submission json for the online GPT-4 grader (needs network; not run here).
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/mm-vet"
require "$B/llava-mm-vet.jsonl" "$B/images"
run_chunked llava_noise.eval.model_vqa "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava-mm-vet.jsonl" --image-folder "$B/images" --temperature 0
"$PYTHON" -m mung.eval.convert_mmvet_for_submission --src "$B/answers/$CKPT.jsonl" \
    --dst "$B/results/$CKPT.json"
