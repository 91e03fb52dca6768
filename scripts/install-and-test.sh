#!/usr/bin/env bash
# Install everything the test suite needs (Python packages, Node packages, Debian's Chromium) into
# this checkout, then run every check: ruff, mypy, the architecture contracts (lint-imports), and
# pytest (browser tests included), then the minimum-versions job (scripts/test-min-versions.sh: the
# wheel at the lowest versions we declare, in .venv-min; TORCHLAB_MIN_VERSIONS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -e ".[test,bench]"
# That install built the JupyterLab extension (npm install + build in labextension/) unless an
# up-to-date build was there already; then its unit tests (jest).
(cd labextension && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test --silent)

.venv/bin/ruff check --no-cache jupyter_torchlab tests benchmarks
.venv/bin/ruff format --no-cache --check jupyter_torchlab tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
if [ "${TORCHLAB_MIN_VERSIONS:-1}" != 0 ]; then
    bash scripts/test-min-versions.sh
fi
