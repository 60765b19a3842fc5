#!/usr/bin/env bash
# The main job at the quick profile: install dlbasics into a fresh virtual environment and run
# every study, writing figures and Markdown reports under reports/quick/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[data,distributed]"
"$VENV/bin/dlbasics" run all --profile quick "$@"
