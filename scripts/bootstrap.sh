#!/usr/bin/env bash
# Create .venv and install the project with the given extras, only when pyproject.toml changed
# since the last install. Sourced by scripts/up.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
PYTHON="${ML_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${ML_VENV:-$ROOT/.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[ml-assets] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.ml-assets-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16) extras=[$EXTRAS]"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[ml-assets] installing ml-assets${EXTRAS:+[$EXTRAS]} into $VENV (first run: ~2 min)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # pip byte-compiles the ~24,000 installed modules one by one (about a minute of one core);
  # compileall does the same on every core.
  "$VENV/bin/python" -m pip install --quiet --no-compile -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  # -qq: a file that does not compile (a template named .py) is compiled, or refused, on import.
  "$VENV/bin/python" -m compileall -qq -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
  "$VENV/bin/python" -m pip check
  echo "$WANT" > "$STAMP"
fi
