#!/bin/bash
# TextVQA val with OCR tokens → accuracy (VQA normalisation, leave-one-out over the ten answers).
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/textvqa"
require "$B/llava_textvqa_val_v051_ocr.jsonl" "$B/train_images" "$B/TextVQA_0.5.1_val.json"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava_textvqa_val_v051_ocr.jsonl" --image-folder "$B/train_images" --temperature 0
"$PYTHON" -m mung.eval.eval_textvqa --annotation-file "$B/TextVQA_0.5.1_val.json" \
    --result-file "$B/answers/$CKPT.jsonl"
