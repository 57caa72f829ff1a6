#!/bin/bash
# GQA test-dev balanced → predictions file, then GQA's eval.py if present (else exact-match accuracy).
source "$(dirname "$0")/_common.sh"
SPLIT="${SPLIT:-llava_gqa_testdev_balanced}"
B="$DATA_ROOT/gqa"
GQADIR="$B/data"
require "$B/$SPLIT.jsonl" "$GQADIR/images"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$SPLIT/$CKPT" "$B/answers/$SPLIT/$CKPT/merge.jsonl" \
    --question-file "$B/$SPLIT.jsonl" --image-folder "$GQADIR/images" --temperature 0
"$PYTHON" -m mung.eval.convert_gqa_for_eval --src "$B/answers/$SPLIT/$CKPT/merge.jsonl" \
    --dst "$GQADIR/testdev_balanced_predictions.json"
if [ -f "$GQADIR/eval/eval.py" ]; then
    (cd "$GQADIR" && "$PYTHON" eval/eval.py --tier testdev_balanced)
else
    require "$GQADIR/testdev_balanced_questions.json"
    "$PYTHON" -m mung.eval.eval_gqa --predictions "$GQADIR/testdev_balanced_predictions.json" \
        --questions "$GQADIR/testdev_balanced_questions.json"
fi
