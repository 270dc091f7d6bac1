"""`<lineage>/inference_log_retention`: the inference log kept to `monitoring.retention_days`,
as a daily-partitioned asset beside the lineage's drift.

The partition fixes the cutoff, so a rerun of a day deletes against the same instant: rows
logged before the end of the partition's day minus `retention_days` go, with their labels (and
any label whose log row is already gone: the service's hourly prune leaves those). One
transaction under `lock_timeout` and `statement_timeout`: a lock that another session holds
fails the run with that session named, and nothing is deleted half-way.
"""

# No `from __future__ import annotations`: Dagster reads the nested asset function's
# `context` annotation at definition time, and a string there is refused.
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
from dagster import AssetExecutionContext
from psycopg import sql
from pydantic import Field

from ml_assets.monitoring.inference_tables import (
    RETENTION_ENV,
    ensure_tables,
    feedback_table,
    log_table,
    retention_override,
)
from ml_assets.platform.daily import BUNDLE, DAILY
from ml_assets.platform.hashing import canonical_json
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.provenance import hashed_output, timed
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore

STAGE = "inference_log_retention"
CODE_VERSION = "inference-log-retention-1"

# The log rows before the cutoff and their labels, in one statement (a CTE's DELETE happens
# even when nothing reads it); then the labels no log row holds any more.
DELETE_ROWS = (
    "WITH gone AS (DELETE FROM {log} WHERE logged_at < %s RETURNING request_id, row_index),"
    " labels AS (DELETE FROM {feedback} f USING gone g"
    " WHERE f.request_id = g.request_id AND f.row_index = g.row_index RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM labels)"
)
DELETE_ORPHANS = (
    "DELETE FROM {feedback} f WHERE NOT EXISTS (SELECT 1 FROM {log} l"
    " WHERE l.request_id = f.request_id AND l.row_index = f.row_index)"
)
KEPT = (
    "SELECT (SELECT count(*) FROM {log}), (SELECT min(logged_at) FROM {log}),"
    " (SELECT count(*) FROM {feedback})"
)
HOLDERS = (
    "SELECT DISTINCT l.pid, l.mode, a.state, a.application_name FROM pg_locks l"
    " JOIN pg_stat_activity a USING (pid) WHERE l.granted AND l.pid <> pg_backend_pid()"
    " AND l.relation IN (to_regclass(%s), to_regclass(%s)) ORDER BY l.pid"
)


class RetentionConfig(dg.Config):
    """How long the deletion may wait for a lock, and run, before it gives up whole."""

    lock_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for a lock on the log or its labels."
    )
    statement_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest any one statement of the deletion may run."
    )


def retention_of(spec: LineageSpec, env: Mapping[str, str]) -> tuple[int, str]:
    """The days the log keeps a record, and where that number came from."""
    override = retention_override(env)
    if override is not None:
        return override, RETENTION_ENV
    return spec.monitoring.retention_days, "monitoring.retention_days"


def cutoff_of(day: str, retention_days: int) -> datetime:
    """The partition's cutoff: rows logged before it are past retention (UTC)."""
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    return end - timedelta(days=retention_days)


def enforce(conn: psycopg.Connection, lineage: str, cutoff: datetime) -> dict[str, Any]:
    """Delete the rows past `cutoff` and their labels in one transaction; what it did."""
    names = {
        "log": sql.Identifier(log_table(lineage)),
        "feedback": sql.Identifier(feedback_table(lineage)),
    }
    ensure_tables(conn, lineage)  # a lineage never served yet has empty tables, not none
    with conn.transaction():
        rows, labels = conn.execute(sql.SQL(DELETE_ROWS).format(**names), (cutoff,)).fetchone()
        orphans = conn.execute(sql.SQL(DELETE_ORPHANS).format(**names)).rowcount
        kept, oldest, labels_kept = conn.execute(sql.SQL(KEPT).format(**names)).fetchone()
    return {
        "rows_deleted": int(rows),
        "labels_deleted": int(labels) + int(orphans),
        "rows_kept": int(kept),
        "labels_kept": int(labels_kept),
        "oldest_kept": None if oldest is None else oldest.astimezone(UTC).isoformat(),
    }


def _holders(dsn: str, lineage: str) -> str:
    """Who holds a lock on the lineage's tables now, for the error message."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(HOLDERS, (log_table(lineage), feedback_table(lineage))).fetchall()
    except psycopg.Error as exc:
        return f"(could not list the lock holders: {exc})"
    if not rows:
        return "(no session holds one any more: rerun the partition)"
    return "; ".join(
        f"pid {pid} holds {mode} ({state}, {app or 'no name'})" for pid, mode, state, app in rows
    )


def _verdict(day: str, record: Mapping[str, Any]) -> str:
    oldest = record["oldest_kept"] or "none"
    return (
        f"{day}: deleted {record['rows_deleted']} log rows and {record['labels_deleted']} "
        f"labels logged before {record['cutoff']}; kept {record['rows_kept']} rows, the "
        f"oldest from {oldest} ({record['retention_days']} days, {record['retention_source']})"
    )


def retention_asset(spec: LineageSpec) -> dg.AssetsDefinition:
    """The lineage's daily retention of its inference log."""

    @dg.asset(
        key=dg.AssetKey([spec.name, STAGE]),
        group_name=spec.name,
        partitions_def=DAILY,
        code_version=CODE_VERSION,
        deps=[dg.AssetKey(BUNDLE)],
    )
    def inference_log_retention(
        context: AssetExecutionContext,
        config: RetentionConfig,
        store: ArtifactStore,
        postgres: PostgresResource,
    ) -> dg.Output[Any]:
        """The lineage's inference log and labels, cut to its retention days."""
        day = context.partition_key
        days, source = retention_of(spec, os.environ)
        cutoff = cutoff_of(day, days)
        options = (
            f"-c lock_timeout={round(config.lock_timeout_s * 1000)}"
            f" -c statement_timeout={round(config.statement_timeout_s * 1000)}"
        )
        with timed() as t:
            try:
                with psycopg.connect(postgres.dsn, options=options, connect_timeout=10) as conn:
                    conn.autocommit = True
                    done = enforce(conn, spec.name, cutoff)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
                why = (
                    f"a lock another session holds did not free within {config.lock_timeout_s} s"
                    if isinstance(exc, psycopg.errors.LockNotAvailable)
                    else f"a statement ran past {config.statement_timeout_s} s"
                )
                raise dg.Failure(
                    f"{log_table(spec.name)} and its labels: {why} ({exc.sqlstate}: "
                    f"{' '.join(str(exc).split())}). Nothing was deleted: the transaction rolled "
                    f"back whole. Lock holders now: {_holders(postgres.dsn, spec.name)}"
                ) from exc
        record = {
            "partition": day,
            "tables": [log_table(spec.name), feedback_table(spec.name)],
            "cutoff": cutoff.isoformat(),
            "retention_days": days,
            "retention_source": source,
            **done,
        }
        ref = store.content().put(
            spec.asset(STAGE), canonical_json(record), ".json", code_version=CODE_VERSION
        )
        context.log.info(_verdict(day, record))
        return hashed_output(
            ref,
            wall_time_s=t["seconds"],
            metadata={
                "verdict": dg.MetadataValue.text(_verdict(day, record)),
                "rows_deleted": dg.MetadataValue.int(done["rows_deleted"]),
                "rows_kept": dg.MetadataValue.int(done["rows_kept"]),
                "oldest_kept": dg.MetadataValue.text(done["oldest_kept"] or "none"),
                "cutoff": dg.MetadataValue.text(record["cutoff"]),
                "retention_days": dg.MetadataValue.int(days),
                "retention_source": dg.MetadataValue.text(source),
                "labels_deleted": dg.MetadataValue.int(done["labels_deleted"]),
                "labels_kept": dg.MetadataValue.int(done["labels_kept"]),
            },
        )

    return inference_log_retention
