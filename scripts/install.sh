#!/usr/bin/env bash
# Creates .venv (if absent) and installs MuNG into it: torch/torchvision first, then the project (with the `mung`
# command), so pip keeps that torch; then what the tests need outside Python (Chromium, scripts/install_browser.sh).
# Override the torch pins with TORCH_SPEC / TORCHVISION_SPEC for other CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
TORCHVISION_SPEC=${TORCHVISION_SPEC:-torchvision==0.29.1}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC"
# DeepSpeed builds its C++/CUDA ops lazily on first use; installing it as pure Python takes seconds.
DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install --quiet -e ".[train,serve,compare,dev]"
"$VENV/bin/python" -c "import torch, transformers, noise_generator; print(f'installed: torch {torch.__version__}, transformers {transformers.__version__}')"
echo "installed: the mung command, $VENV/bin/mung (mung --help)"
# What the tests need beyond Python: Chromium for the web demo's browser tests (apt-get where usable, else the
# exact commands to run). MUNG_NO_BROWSER=1 leaves it out.
[ "${MUNG_NO_BROWSER:-0}" = 1 ] || bash scripts/install_browser.sh
