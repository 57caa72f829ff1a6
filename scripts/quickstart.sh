#!/usr/bin/env bash
# MuNG in one command on the tiny world (CPU, a few minutes): builds the world, trains a tiny "pretrained" base,
# tunes it with MuNG on a domain-shifted split, evaluates before/after, asks the CLI one question, prints a report
# (also <out>/<backbone>/quickstart_report.json). Run after `bash scripts/install.sh`.
#   bash scripts/quickstart.sh [--backbone NAME] [--out DIR] [--seed N] [--fast]   (NAME and all flags: --help)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" scripts/quickstart.py "$@"
