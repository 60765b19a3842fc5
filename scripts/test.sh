#!/usr/bin/env bash
# Install dlbasics with its test dependencies into a fresh virtual environment and run every
# test: the main suite, the pytest-benchmark cases once each (as correctness tests), and the
# GPU kernels under the CUDA simulator in their own pytest process (bounds-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch is pinned to the CPU build available offline: the tests cross-check against it.
"$VENV/bin/python" -m pip install -q -e ".[test,data,distributed,cuda,dev]" "torch==2.13.0"
PY="$VENV/bin/python"
"$PY" -m ruff check kernels models studies tests scripts
"$PY" -m pytest -q --benchmark-disable
if [ -d tests/gpu ]; then
  # bounds-checked compiled helpers; their own cache (Numba's cache key ignores boundscheck)
  NUMBA_ENABLE_CUDASIM=1 NUMBA_BOUNDSCHECK=1 \
    NUMBA_CACHE_DIR="${TMPDIR:-/tmp}/dlbasics-numba-boundscheck" "$PY" -m pytest -q tests/gpu
fi
