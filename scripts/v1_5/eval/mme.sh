#!/bin/bash
# MME → per-subtask acc / acc+, perception and cognition totals.
source "$(dirname "$0")/_common.sh"
B="$DATA_ROOT/MME"
require "$B/llava_mme.jsonl" "$B/MME_Benchmark_release_version"
run_chunked llava_noise.eval.model_vqa_loader "$B/answers/$CKPT" "$B/answers/$CKPT.jsonl" \
    --question-file "$B/llava_mme.jsonl" --image-folder "$B/MME_Benchmark_release_version" --temperature 0
"$PYTHON" -m mung.eval.convert_answer_to_mme --experiment "$CKPT" \
    --data-path "$B/MME_Benchmark_release_version" --answers-dir "$B/answers" --output-dir "$B/eval_tool/answers"
"$PYTHON" -m mung.eval.eval_mme --results_dir "$B/eval_tool/answers/$CKPT"
