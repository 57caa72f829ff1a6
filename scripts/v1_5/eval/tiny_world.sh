#!/bin/bash
# The tiny world's eval split (python -m tiny_world --out DIR) → per-family accuracy. Same shape as the
# benchmark scripts: chunked model_vqa_loader, merged answers, scorer.
#   TINY_WORLD  the tiny world folder (required)      SPLIT  eval (default) or shift_eval
#   QUESTIONS / TRUTH override the question and truth files (e.g. a subset).
source "$(dirname "$0")/_common.sh"
: "${TINY_WORLD:?set TINY_WORLD to a folder built with: python -m tiny_world --out DIR}"
SPLIT="${SPLIT:-eval}"
manifest_path() {  # manifest_path KEY → absolute path of that manifest entry
    "$PYTHON" -c 'import json, os, sys; d = sys.argv[1]; p = json.load(open(os.path.join(d, "manifest.json")))[sys.argv[2]]; print(os.path.join(d, p))' "$TINY_WORLD" "$1"
}
QUESTIONS="${QUESTIONS:-$(manifest_path "${SPLIT}_questions")}"
TRUTH="${TRUTH:-$(manifest_path "${SPLIT}_answers")}"
IMAGES="$(manifest_path image_folder)"
B="$DATA_ROOT/tiny_world"
require "$QUESTIONS" "$TRUTH" "$IMAGES"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$SPLIT/$CKPT" "$B/answers/$SPLIT/$CKPT/merge.jsonl" \
    --question-file "$QUESTIONS" --image-folder "$IMAGES" --temperature 0 --max_new_tokens 8 --batch-size 16
"$PYTHON" -m mung.eval.eval_tiny_world --answers-file "$B/answers/$SPLIT/$CKPT/merge.jsonl" \
    --truth-file "$TRUTH" --output-file "$B/answers/$SPLIT/${CKPT}_scores.json"
