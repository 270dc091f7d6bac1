"""The index from its shards: once every shard of a model version holds the corpus, build
(or update) the model's index table from the staging table, then switch the live view.

The same writer as `search_index.reindex` (`index_documents`), with the rows copied from the
shard runs' staging table instead of embedded: a model version without a table is built beside
the live one (rows copied, then HNSW and GIN, then one switch); a model version with a table is
updated in place in one transaction (only rows whose content hash changed). While any shard is
missing or stale nothing is written and ShardsIncomplete names the shards to (re)run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from ml_assets.search.corpus import Document
from ml_assets.search.index import (
    IndexStats,
    Rows,
    Source,
    index_documents,
)
from ml_assets.search.shards import (
    ShardsIncomplete,
    incomplete,
    shard_status,
    staging_table,
)
from ml_assets.search.switch import (
    SWITCH_ATTEMPTS,
    SWITCH_BACKOFF_S,
    SWITCH_LOCK_TIMEOUT_S,
    live_index,
)
from ml_assets.search.tables import (
    INDEX_COLUMNS,
    SCHEMA,
    table_dim,
)

# What each index column takes from the staging table (which has no tags_text).
_FROM_STAGING = {"tags_text": "array_to_string(s.tags, ' ')"}


def _copy_from_staging(
    conn: psycopg.Connection, table: str, stage: str, keys: list[tuple[str, str]]
) -> None:
    """Insert the staged rows with these (tenant_id, doc_id) keys into the index table."""
    stmt = sql.SQL(
        "INSERT INTO {}.{} ({}) SELECT {} FROM {}.{} s"
        " JOIN unnest(%s::text[], %s::text[]) k(t, d) ON s.tenant_id = k.t AND s.doc_id = k.d"
    ).format(
        sql.Identifier(SCHEMA),
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, INDEX_COLUMNS)),
        sql.SQL(", ").join(sql.SQL(_FROM_STAGING.get(c, f"s.{c}")) for c in INDEX_COLUMNS),
        sql.Identifier(SCHEMA),
        sql.Identifier(stage),
    )
    conn.execute(stmt, ([k[0] for k in keys], [k[1] for k in keys]))


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
    stage = staging_table(model_version, n)

    def staged(todo: Sequence[Document]) -> Rows:
        keys = [(d.tenant_id, d.id) for d in todo]
        return Rows(lambda conn, table: _copy_from_staging(conn, table, stage, keys))

    def source(conn: psycopg.Connection) -> Source:
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
        return Source(table_dim(conn, stage), f"{SCHEMA}.{stage}", staged)

    return index_documents(
        dsn,
        docs,
        model_version,
        corpus_sha256,
        source,
        log,
        lock_timeout_s=lock_timeout_s,
        switch_attempts=switch_attempts,
        switch_backoff_s=switch_backoff_s,
    )
