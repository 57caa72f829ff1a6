#!/usr/bin/env bash
# Creates the evaluation harnesses' own environments next to .venv, once: .venv-lmms-eval (lmms-eval) and
# .venv-vlmeval (VLMEvalKit's `ms-vlmeval` package plus MuNG, editable, for its in-process loop). Each holds torch
# (both harnesses import it at start) installed first from the same pins as .venv, so pip keeps that build.
# A finished environment carries a stamp naming what was installed; with the same stamp it is left as it is,
# so running this again costs nothing. Usage: scripts/harness_envs.sh [lmms-eval|vlmeval]...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}
# lmms-eval 0.7.3 fails at start with filelock 4 (on importing filelock._api).
LMMS_EVAL_SPECS=("lmms-eval==0.7.3" "filelock<4")
# MuNG itself, editable, for the in-process loop; its pyproject's hash in the stamp rebuilds on new pins.
VLMEVAL_SPECS=("ms-vlmeval==0.0.20" "-e" "." "# pyproject $(sha256sum pyproject.toml | cut -c1-16)")

build_env() {  # build_env NAME SPEC...: the environment .venv-NAME with torch and SPEC... installed
    local venv=".venv-$1" stamp spec specs=()
    shift
    stamp="$TORCH_SPEC $TORCHVISION_SPEC $*"
    for spec in "$@"; do [[ $spec == "#"* ]] || specs+=("$spec"); done  # "# ..." items only mark the stamp
    if [ -f "$venv/mung-harness-stamp" ] && [ "$(cat "$venv/mung-harness-stamp")" = "$stamp" ]; then
        echo "$venv: ready ($stamp)"
        return
    fi
    local start=$SECONDS
    rm -f "$venv/mung-harness-stamp"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC"
    "$venv/bin/python" -m pip install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC" "${specs[@]}"
    echo "$stamp" > "$venv/mung-harness-stamp"
    echo "$venv: installed ${specs[*]} in $((SECONDS - start)) s"
}

[ $# -gt 0 ] || set -- lmms-eval vlmeval
# The builds wait mostly on downloads, so they run side by side (from a clean copy, no pip cache, 2 shared cores:
# 12.6 min for both, 2.4 CPU-minutes); each one's status is checked.
pids=()
for name in "$@"; do
    case $name in
        lmms-eval) build_env lmms-eval "${LMMS_EVAL_SPECS[@]}" & ;;
        vlmeval) build_env vlmeval "${VLMEVAL_SPECS[@]}" & ;;
        *) echo "error: unknown harness '$name': give lmms-eval or vlmeval" >&2; exit 2 ;;
    esac
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
