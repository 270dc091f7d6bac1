#!/usr/bin/env bash
# Install what is missing and run the whole test suite (real Postgres, MLflow, Dagster, ONNX).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" "dev"
cd "$ROOT"
VENV="${ML_VENV:-$ROOT/.venv}"
# The browser test (tests/test_asset_page.py) drives the system Chromium: install Debian's
# `chromium` when it is missing, so CI runs that test instead of skipping it.
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium
fi
"$VENV/bin/ruff" check ml_assets serving tests benchmarks scripts
# Two workers by default (ML_TEST_WORKERS=0 runs serially); each test module is one unit of work,
# the test_serving package one (tests/conftest.py). Arguments go on to pytest.
exec "$VENV/bin/python" -m pytest -n "${ML_TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@"
