#!/usr/bin/env bash
# README command 1: install what is needed, then run the demo audit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
source "$ROOT/scripts/env.sh"
echo
echo "[fiftyone-csl demo] running the audit (about 2 minutes on 2 CPU cores)"
"${FCSL_VENV:-$ROOT/.venv}/bin/python" "$ROOT/scripts/demo.py" "$@"
