"""Writing an index table: the one writer (`index_documents`) behind `reindex` (freshly embedded
rows) and `assemble` (the shards' staging table), under the reindex advisory lock.

Only the switch locks what readers lock (the view, AccessExclusive): it waits at most
`lock_timeout_s` per attempt, retries, then raises IndexLockTimeout naming the sessions in the
way; every change of the index appends a `search.index.updated.v1` event in its transaction.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ml_assets.platform import events
from ml_assets.search.corpus import Document, content_hash
from ml_assets.search.switch import (
    SWITCH_ATTEMPTS,
    SWITCH_BACKOFF_S,
    SWITCH_LOCK_TIMEOUT_S,
    live_index,
    switch_live,
)
from ml_assets.search.tables import (
    EVENT_SUBJECT,
    SCHEMA,
    connect,
    create_indexes,
    create_stats,
    create_table,
    ensure_schema,
    has_stats,
    table_dim,
    table_exists,
    table_name,
    update_stats,
    view_exists,
)

# Any number; only reindexes take this lock, so two never write the index at once.
REINDEX_LOCK_KEY = 0x6D6C_6173_7365_7473 & 0x7FFF_FFFF_FFFF_FFFF


class ReindexBusyError(RuntimeError):
    """Another reindex holds the advisory lock."""


@dataclass(frozen=True)
class IndexStats:
    table: str
    model_version: str
    mode: str  # "full" or "incremental"
    embedded: int
    deleted: int
    unchanged: int
    total: int
    truncated: int
    seconds: float
    switched: bool
    added: int
    updated: int
    kind: str | None  # the event's kind ("full", "model_change", "incremental"); None: no change
    event_id: str | None  # the search.index.updated.v1 event appended, None when nothing changed


def _switcher(
    lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S,
    switch_attempts: int = SWITCH_ATTEMPTS,
    switch_backoff_s: float = SWITCH_BACKOFF_S,
) -> Callable[..., None]:
    """`switch_live` with these lock waits, checked: what a reindex calls to make a table live."""
    if lock_timeout_s <= 0 or switch_attempts < 1 or switch_backoff_s < 0:
        raise ValueError(
            "lock_timeout_s must be > 0, switch_attempts >= 1 and switch_backoff_s >= 0; got "
            f"{lock_timeout_s}, {switch_attempts}, {switch_backoff_s}"
        )
    return functools.partial(
        switch_live,
        lock_timeout_s=lock_timeout_s,
        attempts=switch_attempts,
        backoff_s=switch_backoff_s,
    )


@contextmanager
def _reindex_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Hold the reindex advisory lock (or raise ReindexBusyError) and release it on the way out."""
    locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK_KEY,)).fetchone()
    if not locked or not locked[0]:
        raise ReindexBusyError(
            "another reindex holds the index lock; wait for it to finish and run again"
        )
    try:
        yield
    finally:
        conn.rollback()
        conn.execute("SELECT pg_advisory_unlock(%s)", (REINDEX_LOCK_KEY,))
        conn.commit()


def _index_event(
    kind: str,
    table: str,
    model_version: str,
    dim: int,
    corpus_sha256: str,
    live: dict | None,
    counts: dict[str, int],
    docs: Sequence[Document],
) -> dict:
    """The search.index.updated.v1 event for this change of the index."""
    tenants = Counter(d.tenant_id for d in docs)
    return events.new_event(
        events.INDEX_UPDATED,
        kind=kind,
        view=EVENT_SUBJECT,
        table=table,
        previous_table=None if live is None else live["table_name"],
        model_sha256=model_version,
        previous_model_sha256=None if live is None else live["model_version"],
        dim=dim,
        corpus_sha256=corpus_sha256,
        documents=counts,
        tenants=[{"tenant_id": t, "documents": n} for t, n in sorted(tenants.items())],
    )


@dataclass(frozen=True)
class Rows:
    """Rows ready to go into an index table, the slow part (embedding) already done."""

    write: Callable[[psycopg.Connection, str], None]
    embedded: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class Source:
    """Where an index's rows come from: their dimension, a name for messages, and the rows."""

    dim: int
    name: str
    rows: Callable[[Sequence[Document]], Rows]


def index_documents(
    dsn: str,
    docs: Sequence[Document],
    model_version: str,
    corpus_sha256: str,
    source: Callable[[psycopg.Connection], Source],
    log: Callable[[str], None],
    *,
    lock_timeout_s: float,
    switch_attempts: int,
    switch_backoff_s: float,
) -> IndexStats:
    """Under the reindex lock, write the index of `model_version` from `source(conn)`, make it live.

    `source` runs once the lock is held, so what it checks (the shards, say) cannot change
    before the write. The switch waits as `reindex` describes; ReindexBusyError while another
    reindex runs.
    """
    started = time.perf_counter()
    switch = _switcher(lock_timeout_s, switch_attempts, switch_backoff_s)
    with connect(dsn) as conn:
        ensure_schema(conn)
        with _reindex_lock(conn):
            return _write_index(
                conn,
                table_name(model_version),
                docs,
                model_version,
                corpus_sha256,
                source(conn),
                log,
                started,
                switch,
            )


def _write_index(
    conn: psycopg.Connection,
    table: str,
    docs: Sequence[Document],
    model_version: str,
    corpus_sha256: str,
    source: Source,
    log: Callable[[str], None],
    started: float,
    switch: Callable[..., None],
) -> IndexStats:
    """Build `table` beside the live one, or update it in place, then make it live.

    The caller holds `_reindex_lock`. A change appends its event in the switch's transaction;
    no change appends none (the live row only learns a new corpus version).
    """
    wanted = {(d.tenant_id, d.id): d for d in docs}
    if table_exists(conn, table):
        dim = table_dim(conn, table)
        if dim != source.dim:
            raise ValueError(
                f"table {SCHEMA}.{table} holds vector({dim}) but {source.name} gives "
                f"{source.dim} dimensions; the model version does not match its table"
            )
        if not has_stats(conn, table):
            # A table built before the statistics (or their lengths) existed: count once,
            # then keep in step.
            log(f"building lexeme and tenant statistics for {SCHEMA}.{table}")
            create_stats(conn, table)
        existing = {
            (t, d): h
            for t, d, h in conn.execute(
                sql.SQL("SELECT tenant_id, doc_id, content_hash FROM {}.{}").format(
                    sql.Identifier(SCHEMA), sql.Identifier(table)
                )
            )
        }
        # Only this reindex writes the table (advisory lock): no transaction while embedding.
        conn.commit()
        changed = [d for key, d in wanted.items() if existing.get(key) != content_hash(d)]
        removed = [key for key in existing if key not in wanted]
        log(
            f"incremental from {source.name}: {len(changed)} new or changed, "
            f"{len(removed)} removed, {len(wanted) - len(changed)} unchanged"
        )
        rows = source.rows(changed)
        updated = [(d.tenant_id, d.id) for d in changed if (d.tenant_id, d.id) in existing]
        gone = removed + updated
        update_stats(conn, table, gone, -1)
        conn.execute(
            sql.SQL(
                "DELETE FROM {}.{} d USING unnest(%s::text[], %s::text[]) k(t, d)"
                " WHERE d.tenant_id = k.t AND d.doc_id = k.d"
            ).format(sql.Identifier(SCHEMA), sql.Identifier(table)),
            ([k[0] for k in gone], [k[1] for k in gone]),
        )
        rows.write(conn, table)
        update_stats(conn, table, [(d.tenant_id, d.id) for d in changed], 1)
        live = live_index(conn)
        switched = live is None or live["table_name"] != table
        counts = {
            "total": len(wanted),
            "added": len(changed) - len(updated),
            "updated": len(updated),
            "deleted": len(removed),
            "unchanged": len(wanted) - len(changed),
        }
        kind = "model_change" if switched else "incremental" if changed or removed else None
        mode, docs = "incremental", list(wanted.values())
    else:
        conn.commit()
        log(f"full build of {SCHEMA}.{table} from {source.name}: {len(docs)} documents")
        rows = source.rows(docs)
        dim = source.dim
        create_table(conn, table, dim)
        rows.write(conn, table)
        conn.commit()
        log("building HNSW and full-text indexes")
        create_indexes(conn, table)
        conn.commit()
        live = live_index(conn)
        switched = True
        counts = {
            "total": len(docs),
            "added": len(docs),
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
        }
        kind = mode = "full"
    event = None
    if kind is not None:
        event = _index_event(kind, table, model_version, dim, corpus_sha256, live, counts, docs)
        # The view already reads `table` unless the live index moves: replacing it anyway
        # would make an in-place update wait for every reader's lock.
        switch(
            conn,
            table,
            model_version,
            dim,
            corpus_sha256,
            replace_view=switched or not view_exists(conn),
            event=event,
        )
    elif live is not None and live["corpus_sha256"] != corpus_sha256:
        # Same documents under another corpus version: record it, the index is unchanged.
        conn.execute(
            sql.SQL("UPDATE {}.live_index SET corpus_sha256 = %s WHERE name = 'default'").format(
                sql.Identifier(SCHEMA)
            ),
            (corpus_sha256,),
        )
    conn.commit()
    return IndexStats(
        table=table,
        model_version=model_version,
        mode=mode,
        embedded=rows.embedded,
        deleted=counts["deleted"],
        unchanged=counts["unchanged"],
        total=counts["total"],
        truncated=rows.truncated,
        seconds=time.perf_counter() - started,
        switched=switched,
        added=counts["added"],
        updated=counts["updated"],
        kind=kind,
        event_id=None if event is None else event["event_id"],
    )
