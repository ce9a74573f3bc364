#!/usr/bin/env bash
# README command 2: install what is needed, lint, then run the test suite on an
# isolated, throw-away database.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --with-browser
source "$ROOT/scripts/env.sh"
PY="${FCSL_VENV:-$ROOT/.venv}/bin/python"
WORK="$(mktemp -d -t fcsl-test-XXXXXX)"
export FIFTYONE_DATABASE_DIR="$WORK/db" FIFTYONE_CSL_DIR="$WORK/csl"
cleanup() {
    # the test session's mongod normally exits with it; make sure
    pkill -f "mongod.*$WORK/db" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
echo
echo "[fiftyone-csl tests] ruff (lint + format check)"
"$PY" -m ruff check "$ROOT"
"$PY" -m ruff format --check "$ROOT"
echo
echo "[fiftyone-csl tests] pytest (database in $WORK/db)"
cd "$ROOT"
"$PY" -m pytest "$@"
