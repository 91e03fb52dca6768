#!/usr/bin/env bash
# Install everything the test suite needs (Python packages, Node packages, Debian's Chromium and
# Prometheus, JupyterHub's proxy) into
# this checkout, then run every check: ruff, mypy, the architecture contracts (lint-imports), and
# pytest (browser tests included), then the minimum-versions job (scripts/test-min-versions.sh: the
# wheel at the lowest versions we declare, in .venv-min; TORCHLAB_MIN_VERSIONS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's Chromium (browser tests) and Prometheus (the hub service's tests scrape with it)
apt_needed=()
[ -x /usr/bin/chromium ] || apt_needed+=(chromium)
[ -x /usr/bin/prometheus ] || apt_needed+=(prometheus)
if [ ${#apt_needed[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
    fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -e ".[test,bench]"
# That install built the JupyterLab extension (npm install + build in labextension/) unless an
# up-to-date build was there already; then its unit tests (jest).
(cd labextension && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test --silent)
# configurable-http-proxy for the hub tests' real JupyterHub (tests/hub/hubenv.py looks here)
[ -x .venv/hub-node/node_modules/.bin/configurable-http-proxy ] ||
    npm install --no-audit --no-fund --silent --prefix .venv/hub-node configurable-http-proxy@5

.venv/bin/ruff check --no-cache jupyter_torchlab tests benchmarks
.venv/bin/ruff format --no-cache --check jupyter_torchlab tests benchmarks
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest "$@"
if [ "${TORCHLAB_MIN_VERSIONS:-1}" != 0 ]; then
    bash scripts/test-min-versions.sh
fi
