#!/usr/bin/env bash
# Build the medtrans-app folder bundle with PyInstaller, then smoke-test it (--self-test from the bundle).
#   bash installer/build.sh            -> build/installer/dist/medtrans-app/medtrans-app
# Needs: the project's .venv (bash setup.sh) and PyInstaller (.venv/bin/pip install pyinstaller).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -m PyInstaller --version >/dev/null 2>&1; then
  echo "build: PyInstaller is not installed; run: $PY -m pip install pyinstaller" >&2
  exit 2
fi
OUT=build/installer
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$OUT/dist" --workpath "$OUT/work" installer/medtrans-app.spec
echo "build: bundle built in $(( $(date +%s) - start )) s: $OUT/dist/medtrans-app ($(du -sh "$OUT/dist/medtrans-app" | cut -f1))"
bash installer/smoke_test.sh "$OUT/dist/medtrans-app"
