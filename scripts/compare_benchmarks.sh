#!/bin/bash
# Evaluate every finished run of a comparison (python -m mung.compare --out OUT) with benchmark scripts of
# scripts/v1_5/eval/ (they load any backbone's checkpoint):  bash scripts/compare_benchmarks.sh OUT gqa pope ...
# Answers and scores land where each script puts them, named <method>-seed<k> (e.g. lora-r32-seed0). A benchmark
# finished for a run (marker OUT/benchmarks/<name>.<benchmark>.done) is skipped on a rerun (delete it to redo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_launch_env.sh
use_repo_venv
OUT=${1:?usage: bash scripts/compare_benchmarks.sh OUT BENCHMARK...}
shift
[ "$#" -gt 0 ] || { echo "name at least one benchmark of scripts/v1_5/eval/ (e.g. pope mme)" >&2; exit 1; }
for bench in "$@"; do
    [ -f "scripts/v1_5/eval/$bench.sh" ] || { echo "no benchmark script scripts/v1_5/eval/$bench.sh" >&2; exit 1; }
done
python -m mung.compare --list-checkpoints --out "$OUT" | while IFS=$'\t' read -r method seed checkpoint base; do
    name="$(echo "$method" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g')-seed$seed"
    for bench in "$@"; do
        marker="$OUT/benchmarks/$name.$bench.done"
        if [ -f "$marker" ]; then echo "[benchmarks] $name $bench: done before"; continue; fi
        echo "[benchmarks] $name $bench"
        MODEL_PATH="$checkpoint" MODEL_BASE="$base" CKPT="$name" SEED="$seed" bash "scripts/v1_5/eval/$bench.sh" < /dev/null
        mkdir -p "$OUT/benchmarks" && touch "$marker"
    done
done
echo "[benchmarks] scores: under playground/data/eval/<benchmark>/answers/ (names <method>-seed<k>)"
