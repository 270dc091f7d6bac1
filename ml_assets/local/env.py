"""The local platform's environment: databases, directories, variables, status lines.

Shared by `ml-assets up` (ml_assets/local/up.py) and the other `ml-assets` commands (local/cli.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from ml_assets.local.stack import Settings, ensure_databases, platform_env, start_embedded_postgres

REPO = Path(__file__).resolve().parents[2]


def say(msg: str) -> None:
    # Status goes to stderr: stdout is for what a caller consumes (`eval "$(ml-assets env)"`).
    print(f"[ml-assets] {msg}", file=sys.stderr, flush=True)


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def prepare(settings: Settings) -> dict[str, str]:
    """Databases, directories, environment; the embedded Postgres unless ML_PG_DSN is set."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    if settings.pg_dsn:
        server_dsn = settings.pg_dsn
        say("using the external PostgreSQL from ML_PG_DSN")
    else:
        started = time.monotonic()
        server_dsn = start_embedded_postgres(settings.home / "pg", stop_on_exit=False)
        say(
            f"embedded PostgreSQL 18 ready in {time.monotonic() - started:.1f} s "
            f"(data in {settings.home / 'pg'})"
        )
    ensure_databases(server_dsn)
    mlflow_uri = settings.mlflow_tracking_uri or f"http://127.0.0.1:{settings.mlflow_port}"
    env = platform_env(settings, server_dsn, mlflow_uri)
    dagster_home = Path(env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env["ML_SERVING_API_KEY"] = serving_api_key(settings)
    return env


def serving_api_key(settings: Settings) -> str:
    """ML_SERVING_API_KEY, or a random key kept in $ML_HOME/serving_api_key (mode 0600)."""
    if key := os.environ.get("ML_SERVING_API_KEY"):
        return key
    path = settings.home / "serving_api_key"
    if not path.exists():
        import secrets

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
