#!/usr/bin/env bash
# README command 2: install what is needed, lint, then run the test suite on an
# isolated, throw-away database.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --with-browser
source "$ROOT/scripts/env.sh"
PY="${FCSL_VENV:-$ROOT/.venv}/bin/python"
# tests/conftest.py starts a mongod of the tests' own on a free port and points
# FIFTYONE_DATABASE_URI at it: the tests never touch a database server that
# happens to be running (an open App's, say)
WORK="$(mktemp -d -t fcsl-test-XXXXXX)"
export FIFTYONE_CSL_DIR="$WORK/csl"
trap 'rm -rf "$WORK"' EXIT
echo
echo "[fiftyone-csl tests] ruff (lint + format check)"
"$PY" -m ruff check "$ROOT"
"$PY" -m ruff format --check "$ROOT"
echo
echo "[fiftyone-csl tests] pytest (own mongod on a free port, run files in $WORK/csl)"
cd "$ROOT"
"$PY" -m pytest "$@"
