"""The index from its shards: once every shard of a model version holds the corpus, build
(or update) the model's index table from the staging table, then switch the live view.

The same two paths as `search_index.reindex`, with the embedding already done by the shard
runs: a model version without a table is built beside the live one (rows copied, then HNSW
and GIN, then one switch); a model version with a table is updated in place in one
transaction (only rows whose content hash changed). While any shard is missing or stale
nothing is written and ShardsIncomplete names the shards to (re)run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from ml_assets.core.corpus import Document, content_hash
from ml_assets.core.search_index import REINDEX_LOCK_KEY, IndexStats, ReindexBusyError, _index_event
from ml_assets.core.search_shards import (
    ShardsIncomplete,
    incomplete,
    shard_status,
    staging_table,
)
from ml_assets.core.search_switch import (
    SWITCH_ATTEMPTS,
    SWITCH_BACKOFF_S,
    SWITCH_LOCK_TIMEOUT_S,
    _switch,
    live_index,
)
from ml_assets.core.search_tables import (
    SCHEMA,
    _create_indexes,
    _create_stats,
    _create_table,
    _has_stats,
    _table_dim,
    _table_exists,
    _update_stats,
    _view_exists,
    connect,
    ensure_schema,
    table_name,
)

_INDEX_COLUMNS = (
    "tenant_id", "doc_id", "type", "title", "body", "tags", "tags_text", "updated_at",
    "content_hash", "model_version", "embedding",
)  # fmt: skip
_FROM_STAGING = (
    "tenant_id", "doc_id", "type", "title", "body", "tags", "array_to_string(tags, ' ')",
    "updated_at", "content_hash", "model_version", "embedding",
)  # fmt: skip


def _copy_from_staging(
    conn: psycopg.Connection, table: str, stage: str, keys: list[tuple[str, str]] | None
) -> None:
    """Insert staged rows into the index table: all of them, or those with these keys."""
    select = sql.SQL(", ").join(sql.SQL("s." + c if c.isidentifier() else c) for c in _FROM_STAGING)
    stmt = sql.SQL("INSERT INTO {}.{} ({}) SELECT {} FROM {}.{} s").format(
        sql.Identifier(SCHEMA),
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, _INDEX_COLUMNS)),
        select,
        sql.Identifier(SCHEMA),
        sql.Identifier(stage),
    )
    if keys is None:
        conn.execute(stmt)
        return
    conn.execute(
        stmt
        + sql.SQL(
            " JOIN unnest(%s::text[], %s::text[]) k(t, d) ON s.tenant_id = k.t AND s.doc_id = k.d"
        ),
        ([k[0] for k in keys], [k[1] for k in keys]),
    )


def assemble(
    dsn: str,
    docs: Sequence[Document],
    n: int,
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None] = lambda _msg: None,
    *,
    lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S,
    switch_attempts: int = SWITCH_ATTEMPTS,
    switch_backoff_s: float = SWITCH_BACKOFF_S,
) -> IndexStats:
    """Bring the index of `model_version` in line with `docs` from its `n` complete shards."""
    started = time.perf_counter()
    table = table_name(model_version)
    stage = staging_table(model_version, n)
    switch = functools.partial(
        _switch, lock_timeout_s=lock_timeout_s, attempts=switch_attempts, backoff_s=switch_backoff_s
    )
    with connect(dsn) as conn:
        ensure_schema(conn)
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK_KEY,)).fetchone()
        if not locked or not locked[0]:
            raise ReindexBusyError(
                "another reindex holds the index lock; wait for it to finish and run again"
            )
        try:
            status = shard_status(conn, docs, n, model_version)
            missing = incomplete(status)
            if missing:
                live = live_index(conn)
                serving = f"{SCHEMA}.{live['table_name']}" if live else "no index yet"
                raise ShardsIncomplete(
                    f"{len(missing)} of {n} shards of {SCHEMA}.{stage} are not done for this "
                    f"corpus: {', '.join(f'{k} ({status[k]})' for k in missing)}. Materialize "
                    "those partitions of embedding_shards (each can be retried alone from the "
                    f"asset's partition view), then this asset again. Nothing was switched: "
                    f"search still serves {serving}."
                )
            return _assemble_locked(
                conn, table, stage, docs, model_version, corpus_sha256, log, started, switch
            )
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (REINDEX_LOCK_KEY,))
            conn.commit()


def _assemble_locked(
    conn: psycopg.Connection,
    table: str,
    stage: str,
    docs: Sequence[Document],
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None],
    started: float,
    switch: Callable[..., None],
) -> IndexStats:
    dim = _table_dim(conn, stage)
    wanted = {(d.tenant_id, d.id): d for d in docs}
    live = live_index(conn)
    if _table_exists(conn, table):
        if _table_dim(conn, table) != dim:
            raise ValueError(f"{SCHEMA}.{table} and {SCHEMA}.{stage} hold different dimensions")
        if not _has_stats(conn, table):
            _create_stats(conn, table)
        existing = {
            (t, d): h
            for t, d, h in conn.execute(
                sql.SQL("SELECT tenant_id, doc_id, content_hash FROM {}.{}").format(
                    sql.Identifier(SCHEMA), sql.Identifier(table)
                )
            )
        }
        changed = [k for k, d in wanted.items() if existing.get(k) != content_hash(d)]
        removed = [k for k in existing if k not in wanted]
        updated = [k for k in changed if k in existing]
        gone = removed + updated
        log(f"in place: {len(changed)} new or changed from the shards, {len(removed)} removed")
        _update_stats(conn, table, gone, -1)
        conn.execute(
            sql.SQL(
                "DELETE FROM {}.{} d USING unnest(%s::text[], %s::text[]) k(t, d)"
                " WHERE d.tenant_id = k.t AND d.doc_id = k.d"
            ).format(sql.Identifier(SCHEMA), sql.Identifier(table)),
            ([k[0] for k in gone], [k[1] for k in gone]),
        )
        _copy_from_staging(conn, table, stage, changed)
        _update_stats(conn, table, changed, 1)
        switched = live is None or live["table_name"] != table
        counts = {
            "total": len(wanted),
            "added": len(changed) - len(updated),
            "updated": len(updated),
            "deleted": len(removed),
            "unchanged": len(wanted) - len(changed),
        }
        kind = "model_change" if switched else "incremental" if changed or removed else None
        mode = "incremental"
    else:
        conn.commit()
        log(f"full build of {SCHEMA}.{table} from {SCHEMA}.{stage}: {len(wanted)} documents")
        _create_table(conn, table, dim)
        _copy_from_staging(conn, table, stage, None)
        conn.commit()
        log("building HNSW and full-text indexes")
        _create_indexes(conn, table)
        conn.commit()
        live = live_index(conn)
        switched, changed, removed, updated = True, list(wanted), [], []
        counts = {
            "total": len(docs),
            "added": len(docs),
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
        }
        kind, mode = "full", "full"
    event = None
    if kind is not None:
        event = _index_event(kind, table, model_version, dim, corpus_sha256, live, counts, docs)
        switch(
            conn,
            table,
            model_version,
            dim,
            corpus_sha256,
            replace_view=switched or not _view_exists(conn),
            event=event,
        )
    elif live is not None and live["corpus_sha256"] != corpus_sha256:
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
        embedded=0,
        deleted=len(removed),
        unchanged=counts["unchanged"],
        total=len(wanted),
        truncated=0,
        seconds=time.perf_counter() - started,
        switched=switched,
        added=counts["added"],
        updated=counts["updated"],
        kind=kind,
        event_id=None if event is None else event["event_id"],
    )
