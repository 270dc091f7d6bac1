"""The inference log's tables in Postgres, one pair per lineage: what the service writes
(serving/inference_log.py, serving/feedback_routes.py) and the drift asset reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Overrides every lineage's `monitoring.retention_days` where it is set: in the service (its
# log writer's hourly prune) and in the Dagster run (the daily retention asset) alike.
RETENTION_ENV = "ML_INFERENCE_LOG_RETENTION_DAYS"


def log_table(lineage: str) -> str:
    return f"inference_log__{lineage}"


def feedback_table(lineage: str) -> str:
    return f"inference_feedback__{lineage}"


def retention_override(env: Mapping[str, str]) -> int | None:
    """ML_INFERENCE_LOG_RETENTION_DAYS in `env` as days (>= 1), or None when it is unset."""
    days = env.get(RETENTION_ENV)
    if days is None:
        return None
    if not days.strip().isdigit() or int(days) < 1:
        raise ValueError(f"{RETENTION_ENV}={days}: expected a whole number of days >= 1")
    return int(days)


def ensure_tables(conn: Any, lineage: str) -> None:
    """The lineage's log and feedback tables (workers race to create them: one at a time)."""
    from psycopg import sql

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (log_table(lineage),))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " request_id text NOT NULL, row_index integer NOT NULL,"
                " logged_at timestamptz NOT NULL, registered_model text NOT NULL,"
                " model_version text NOT NULL, onnx_sha256 text NOT NULL,"
                " features jsonb NOT NULL, output double precision NOT NULL,"
                " latency_ms double precision NOT NULL,"
                " PRIMARY KEY (request_id, row_index))"
            ).format(sql.Identifier(log_table(lineage)))
        )
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (logged_at)").format(
                sql.Identifier(f"{log_table(lineage)}_logged_at"),
                sql.Identifier(log_table(lineage)),
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " request_id text NOT NULL, row_index integer NOT NULL, label jsonb NOT NULL,"
                " received_at timestamptz NOT NULL, PRIMARY KEY (request_id, row_index))"
            ).format(sql.Identifier(feedback_table(lineage)))
        )


def read_day(conn: Any, lineage: str, day_start: Any, day_end: Any) -> list[tuple]:
    """(features, output, label or None, onnx_sha256) of each row logged in [start, end)."""
    from psycopg import sql

    return conn.execute(
        sql.SQL(
            "SELECT l.features, l.output, f.label, l.onnx_sha256 FROM {log} l"
            " LEFT JOIN {feedback} f USING (request_id, row_index)"
            " WHERE l.logged_at >= %s AND l.logged_at < %s ORDER BY l.logged_at, l.row_index"
        ).format(
            log=sql.Identifier(log_table(lineage)), feedback=sql.Identifier(feedback_table(lineage))
        ),
        (day_start, day_end),
    ).fetchall()
