#!/usr/bin/env bash
# Install jupyter-torchlab into .venv and start JupyterLab in ./workspace with the tutorial in it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q . jupyterlab
mkdir -p workspace
.venv/bin/jupyter torchlab tutorial workspace || true
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)
exec .venv/bin/jupyter lab --notebook-dir=workspace "${extra[@]}" "$@"
