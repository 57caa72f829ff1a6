#!/bin/bash
# LLaVA-Bench (in-the-wild) answers. The GPT-4 judge that writes reviews/<ckpt>.jsonl needs network access and
# an API key: it is NOT run here. Put the review file there (made elsewhere) and this script summarises it.
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/llava-bench-in-the-wild"
require "$B/questions.jsonl" "$B/images"
run_chunked llava_noise.eval.model_vqa "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/questions.jsonl" --image-folder "$B/images" --temperature 0
if [ -f "$B/reviews/$CKPT.jsonl" ]; then
    "$PYTHON" -m mung.eval.summarize_llavabench -f "$B/reviews/$CKPT.jsonl"
else
    echo "no $B/reviews/$CKPT.jsonl: the GPT-4 review step needs network and is not run here;"
    echo "review $B/answers/$CKPT.jsonl against $B/answers_gpt4.jsonl elsewhere, then rerun to summarise."
fi
