#!/usr/bin/env bash
# Runs the test suite the way CI does: a local PostgreSQL test database for the multi-site study tests (when
# Debian's postgresql is installed; setup.sh installs it), the import-linter contracts, a virtual X server for
# napari's canvas, then pytest.
# Extra arguments go to pytest (e.g. bash run-tests.sh tests/core -x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ -z "${MEDTRANS_TEST_PG_URL:-}" ] && [ -d /usr/lib/postgresql ]; then
  PGV=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if [ "$(id -u)" -eq 0 ]; then AS_PG="runuser -u postgres --"; else AS_PG="sudo -n -u postgres"; fi
  # Debian's default cluster listens on localhost only.
  $AS_PG pg_ctlcluster "$PGV" main start >/dev/null 2>&1 || true
  if $AS_PG psql -qtc "SELECT 1" >/dev/null 2>&1; then
    $AS_PG psql -qtc "SELECT 1 FROM pg_roles WHERE rolname='medtrans'" | grep -q 1 \
      || $AS_PG psql -qc "CREATE ROLE medtrans LOGIN PASSWORD 'medtrans'" >/dev/null
    $AS_PG psql -qtc "SELECT 1 FROM pg_database WHERE datname='medtrans_test'" | grep -q 1 \
      || $AS_PG createdb -O medtrans medtrans_test
    export MEDTRANS_TEST_PG_URL=postgresql://medtrans:medtrans@127.0.0.1/medtrans_test
    echo "run-tests: PostgreSQL $PGV test database at 127.0.0.1"
  else
    echo "run-tests: PostgreSQL not reachable; its store tests will be skipped"
  fi
fi

# The architecture's layers (pyproject.toml, [tool.importlinter]): a broken contract fails the run.
LINT_OUT=$(mktemp)
if ! .venv/bin/lint-imports --no-cache >"$LINT_OUT" 2>&1; then
  cat "$LINT_OUT"
  echo "run-tests: lint-imports: an import breaks the layers of ../shared/ARCHITECTURE.md (above)"
  exit 1
fi
echo "run-tests: lint-imports: $(grep -c ' KEPT' "$LINT_OUT") contracts kept"

export QT_QPA_PLATFORM=xcb
exec xvfb-run -a .venv/bin/python -m pytest "$@"
