#!/usr/bin/env bash
# Install what is missing and run the whole test suite (real Postgres, MLflow, Dagster, ONNX).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" "dev"
cd "$ROOT"
VENV="${ML_VENV:-$ROOT/.venv}"
"$VENV/bin/ruff" check ml_assets serving tests benchmarks scripts
exec "$VENV/bin/python" -m pytest "$@"
