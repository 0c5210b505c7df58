#!/usr/bin/env bash
# Smoke test of a built bundle: run its --self-test headless (exit 0 = the app starts, loads a phantom and
# translates it) and its --version, from outside the source tree so nothing leaks in from it.
#   bash installer/smoke_test.sh build/installer/dist/medtrans-app
set -euo pipefail
BUNDLE=$(cd "${1:?usage: smoke_test.sh BUNDLE_FOLDER}" && pwd)
EXE="$BUNDLE/medtrans-app"
[ -x "$EXE" ] || { echo "smoke: no executable at $EXE" >&2; exit 2; }
cd "$(mktemp -d)"
start=$(date +%s)
env -u PYTHONPATH QT_QPA_PLATFORM=offscreen MEDTRANS_HOME="$PWD/home" timeout 300 "$EXE" --version
env -u PYTHONPATH QT_QPA_PLATFORM=offscreen MEDTRANS_HOME="$PWD/home" timeout 300 "$EXE" --self-test 2>&1 \
  | grep -v "propagateSizeHints"
echo "smoke: bundle self-test passed in $(( $(date +%s) - start )) s; bundle size $(du -sh "$BUNDLE" | cut -f1)"
