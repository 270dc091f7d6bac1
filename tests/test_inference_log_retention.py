"""`fraud/inference_log_retention` materialized for real on the embedded Postgres: rows past the
retention go with their labels, recent ones stay, a rerun deletes nothing more, a lineage with
no log yet gets empty tables, and a lock another session holds fails the run fast, naming that
session, with nothing deleted."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from psycopg import sql

from ml_assets.monitoring.inference_tables import (
    RETENTION_ENV,
    ensure_tables,
    feedback_table,
    log_table,
)
from ml_assets.monitoring.retention_asset import STAGE, cutoff_of
from ml_assets.resources.defaults import local_resources
from tests.helpers import CATALOG, DEFS, FRAUD, failure_text

SPEC = CATALOG.lineage(FRAUD)
DAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
CUTOFF = cutoff_of(DAY, SPEC.monitoring.retention_days)
# The asset the fraud component declares (ml_assets/lineages/fraud/defs.yaml), as deployed.
RETENTION = next(a for a in DEFS.assets if AssetKey([FRAUD, STAGE]) in getattr(a, "keys", ()))
# request id -> (logged at, labelled?): two past the cutoff, one on it, one on the day itself.
ROWS = {
    "old-labelled": (CUTOFF - timedelta(days=2), True),
    "old": (CUTOFF - timedelta(seconds=1), False),
    "edge-labelled": (CUTOFF, True),
    "recent-labelled": (CUTOFF + timedelta(days=29, hours=12), True),
}


@pytest.fixture
def env(tmp_path, mlflow_resource, vector_dsn, monkeypatch):
    """The fraud lineage's log and labels as ROWS, plus a label whose log row is long gone."""
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    with psycopg.connect(vector_dsn, autocommit=True) as conn:
        drop_tables(conn)
        ensure_tables(conn, FRAUD)
        for request_id, (at, _) in ROWS.items():
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, 0, %s, %s, '3', %s, %s, 0.25, 1.5)").format(
                    sql.Identifier(log_table(FRAUD))
                ),
                (request_id, at, SPEC.registered_model, "ab" * 32, json.dumps({"amount": 9.5})),
            )
        labelled = [r for r, (_, has_label) in ROWS.items() if has_label] + ["orphan"]
        for request_id in labelled:
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, 0, '1', now())").format(
                    sql.Identifier(feedback_table(FRAUD))
                ),
                (request_id,),
            )
    instance = DagsterInstance.ephemeral()
    yield {
        "dsn": vector_dsn,
        "instance": instance,
        "resources": local_resources(tmp_path / "artifacts", mlflow_resource, vector_dsn),
    }
    instance.dispose()


def drop_tables(conn: psycopg.Connection) -> None:
    for table in (log_table(FRAUD), feedback_table(FRAUD)):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def ids(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        query = sql.SQL("SELECT request_id FROM {}").format(sql.Identifier(table))
        return {r for (r,) in conn.execute(query).fetchall()}


def run(env, **config):
    return materialize(
        [RETENTION],
        partition_key=DAY,
        resources=env["resources"],
        instance=env["instance"],
        run_config={"ops": {f"{FRAUD}__{STAGE}": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def metadata(result) -> dict:
    (mat,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_old_rows_and_their_labels_go_recent_ones_stay_and_a_rerun_deletes_nothing(env):
    result = run(env)
    assert result.success
    assert ids(env["dsn"], log_table(FRAUD)) == {"edge-labelled", "recent-labelled"}
    assert ids(env["dsn"], feedback_table(FRAUD)) == {"edge-labelled", "recent-labelled"}
    md = metadata(result)
    # Read in order: the verdict, then what was deleted and kept, the cutoff, the retention.
    assert list(md)[:6] == [
        "verdict",
        "rows_deleted",
        "rows_kept",
        "oldest_kept",
        "cutoff",
        "retention_days",
    ]
    assert md["verdict"].startswith(f"{DAY}: deleted 2 log rows and 2 labels")
    assert (md["rows_deleted"], md["labels_deleted"], md["rows_kept"], md["labels_kept"]) == (
        2,
        2,
        2,
        2,
    )
    assert md["cutoff"] == md["oldest_kept"] == CUTOFF.isoformat()
    assert CUTOFF == datetime.fromisoformat(DAY).replace(tzinfo=UTC) + timedelta(days=1 - 30)
    assert (md["retention_days"], md["retention_source"]) == (30, "monitoring.retention_days")
    # The data version is the sha256 of the record it stored, which says the same.
    with open(md["path"], "rb") as f:
        stored = f.read()
    assert hashlib.sha256(stored).hexdigest() == md["sha256"]
    assert json.loads(stored)["rows_deleted"] == 2

    again = run(env)
    assert again.success
    md = metadata(again)
    assert (md["rows_deleted"], md["labels_deleted"], md["rows_kept"]) == (0, 0, 2)
    assert ids(env["dsn"], log_table(FRAUD)) == {"edge-labelled", "recent-labelled"}


def test_the_environment_overrides_the_yaml_retention(env, monkeypatch):
    monkeypatch.setenv(RETENTION_ENV, "1")  # keep only the partition's own day
    md = metadata(run(env))
    assert (md["retention_days"], md["retention_source"]) == (1, RETENTION_ENV)
    assert md["cutoff"] == datetime.fromisoformat(DAY).replace(tzinfo=UTC).isoformat()
    assert ids(env["dsn"], log_table(FRAUD)) == {"recent-labelled"}
    assert ids(env["dsn"], feedback_table(FRAUD)) == {"recent-labelled"}


def test_a_lineage_with_no_log_yet_gets_empty_tables_not_an_error(env):
    with psycopg.connect(env["dsn"], autocommit=True) as conn:
        drop_tables(conn)
    result = run(env)
    assert result.success
    md = metadata(result)
    assert (md["rows_deleted"], md["rows_kept"], md["oldest_kept"]) == (0, 0, "none")
    assert ids(env["dsn"], log_table(FRAUD)) == ids(env["dsn"], feedback_table(FRAUD)) == set()


def test_a_held_lock_fails_fast_naming_its_holder_and_deletes_nothing(env):
    # Another session (the feedback route mid-transaction, say) holds a label due for deletion;
    # the server ends it within a minute whatever happens here.
    holder = psycopg.connect(env["dsn"], options="-c idle_in_transaction_session_timeout=60000")
    try:
        holder.execute(
            sql.SQL("SELECT 1 FROM {} WHERE request_id = 'old-labelled' FOR UPDATE").format(
                sql.Identifier(feedback_table(FRAUD))
            )
        )
        started = time.monotonic()
        result = run(env, lock_timeout_s=0.5)
        elapsed = time.monotonic() - started
        assert not result.success
        text = failure_text(result)
        assert "lock timeout" in text and "Nothing was deleted" in text
        assert f"pid {holder.info.backend_pid} holds RowShareLock" in text
        assert elapsed < 20, elapsed
        # The log rows the same transaction had already deleted are all back.
        assert ids(env["dsn"], log_table(FRAUD)) == set(ROWS)
        assert ids(env["dsn"], feedback_table(FRAUD)) == {
            *(r for r, (_, labelled) in ROWS.items() if labelled),
            "orphan",
        }
    finally:
        holder.rollback()
        holder.close()
    assert run(env).success  # once the lock is gone, the same partition goes through
    assert ids(env["dsn"], log_table(FRAUD)) == {"edge-labelled", "recent-labelled"}
