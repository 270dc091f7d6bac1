#!/usr/bin/env bash
# Run the platform on the embedded default: PostgreSQL 18 + pgvector, MLflow, Dagster UI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" ""
cd "$ROOT"
exec "${ML_VENV:-$ROOT/.venv}/bin/ml-assets" up "$@"
