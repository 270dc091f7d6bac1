"""The pgvector index: one table per embedding-model version, a live view switched atomically.

Layout (schema `search` in the ml_assets database):
- `search.docs_<model>`: one row per (tenant_id, doc_id) with the embedding (HNSW, cosine),
  a weighted tsvector (GIN) and the document's content hash.
- `search.lexeme_stats`: per table and tenant, how many documents hold each lexeme (kept in
  step with the table in the same transaction); lexical search ranks only the documents that
  hold the query's rarer lexemes, so its cost stays bounded at any corpus size.
- `search.tenant_stats`: documents per table and tenant, and their summed length (distinct
  lexemes); vector search scans a small tenant exactly instead of filtering a graph walk
  over everyone's documents, and BM25 normalises by the tenant's average document length.
- `search.live_documents`: a view over the table that search reads (it finds the statistics by
  the table name in `search.live_index`); replacing the view and that row happens in one
  transaction, so a reader sees the old index or the new one, never a half-built one.

Only the switch locks what readers lock (the view, AccessExclusive): it waits at most
`lock_timeout_s` per attempt, retries, then raises IndexLockTimeout naming the sessions in the
way; every change of the index appends a `search.index.updated.v1` event in its transaction.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from ml_assets.core import events
from ml_assets.core.corpus import Document, content_hash

SCHEMA = "search"
LIVE_VIEW = "live_documents"
# Statistics of every index table, keyed by table name: search joins them on the live table's
# name from live_index, so the switch replaces one view only (readers lock nothing else that
# the switch locks: no lock-order deadlock with running searches).
LEXEME_STATS = "lexeme_stats"
TENANT_STATS = "tenant_stats"
# Any number; only reindexes take this lock, so two never write the index at once.
REINDEX_LOCK_KEY = 0x6D6C_6173_7365_7473 & 0x7FFF_FFFF_FFFF_FFFF
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 200
# The HNSW build is several times faster when its graph fits in memory (100,000 x 384 fits).
BUILD_MAINTENANCE_WORK_MEM = "1GB"
# While the switch waits for the view's lock, new searches queue behind it: wait briefly, let
# them run between attempts, and give up after a few (readers hold the lock for milliseconds,
# so only a stuck session makes the switch wait at all).
SWITCH_LOCK_TIMEOUT_S = 1.0
SWITCH_ATTEMPTS = 4
SWITCH_BACKOFF_S = 0.5
CONNECT_TIMEOUT_S = 10
EVENT_SUBJECT = f"{SCHEMA}.{LIVE_VIEW}"


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class ReindexBusyError(RuntimeError):
    """Another reindex holds the advisory lock."""


class IndexLockTimeout(RuntimeError):
    """The switch could not take its locks in time; the message names the sessions holding them."""


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


def table_name(model_version: str) -> str:
    """A table per model version, named from the model's sha256."""
    if not model_version.isalnum():
        raise ValueError(f"model_version must be a hex digest, got {model_version!r}")
    return f"docs_{model_version[:16]}"


def embedding_text(doc: Document) -> str:
    return f"{doc.title}. {doc.text}"


def connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection with pgvector's types registered (the extension is created if missing).

    Readers that keep a connection open should pass autocommit=True: a statement outside
    `conn.transaction()` then cannot leave the session idle in transaction, holding locks.
    """
    conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        conn.rollback()
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.commit()
        register_vector(conn)
    return conn


def ensure_schema(conn: psycopg.Connection) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    # btree_gin: one GIN index over (tenant_id, tsv), so a tenant's matches come from the index.
    conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.live_index ("
            " name text PRIMARY KEY, table_name text NOT NULL, model_version text NOT NULL,"
            " dim int NOT NULL, corpus_sha256 text NOT NULL, switched_at timestamptz NOT NULL)"
        ).format(sql.Identifier(SCHEMA))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (table_name text NOT NULL, tenant_id text NOT NULL,"
            " lexeme text NOT NULL, ndoc int NOT NULL, PRIMARY KEY (table_name, tenant_id, lexeme))"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(LEXEME_STATS))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (table_name text NOT NULL, tenant_id text NOT NULL,"
            " ndoc int NOT NULL, total_len bigint, PRIMARY KEY (table_name, tenant_id))"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS))
    )
    # Statistics from before BM25 lack the lengths: add the column (NULL marks them stale, and
    # reindex recounts). Only when missing: ALTER TABLE would queue behind every search.
    if not conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " AND column_name = 'total_len'",
        (SCHEMA, TENANT_STATS),
    ).fetchone():
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS total_len bigint").format(
                sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS)
            )
        )
    conn.commit()


# A document's length for BM25, as search computes it: the number of distinct lexemes.
DOC_LENGTH = "length({})"


def _create_table(conn: psycopg.Connection, table: str, dim: int) -> None:
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} ("
            " tenant_id text NOT NULL, doc_id text NOT NULL, type text NOT NULL,"
            " title text NOT NULL, body text NOT NULL, tags text[] NOT NULL,"
            " tags_text text NOT NULL,"
            " updated_at timestamptz NOT NULL, content_hash text NOT NULL,"
            " model_version text NOT NULL, embedding vector({}) NOT NULL,"
            " tsv tsvector GENERATED ALWAYS AS ("
            "  setweight(to_tsvector('english', title), 'A') ||"
            "  setweight(to_tsvector('english', tags_text), 'B') ||"
            "  setweight(to_tsvector('english', body), 'C')) STORED,"
            " PRIMARY KEY (tenant_id, doc_id))"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(table), sql.Literal(dim))
    )


def _create_stats(conn: psycopg.Connection, table: str) -> None:
    """Lexeme document frequencies and document counts per tenant, from the whole table."""
    src = sql.Identifier(SCHEMA), sql.Identifier(table)
    for stats in (LEXEME_STATS, TENANT_STATS):
        conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE table_name = %s").format(
                sql.Identifier(SCHEMA), sql.Identifier(stats)
            ),
            (table,),
        )
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.{} SELECT %s, d.tenant_id, u.lexeme, count(*)"
            " FROM {}.{} d, unnest(d.tsv) u GROUP BY 2, 3"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(LEXEME_STATS), *src),
        (table,),
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.{} (table_name, tenant_id, ndoc, total_len)"
            " SELECT %s, d.tenant_id, count(*), sum({}) FROM {}.{} d GROUP BY 2"
        ).format(
            sql.Identifier(SCHEMA),
            sql.Identifier(TENANT_STATS),
            sql.SQL(DOC_LENGTH.format("d.tsv")),
            *src,
        ),
        (table,),
    )
    for stats in (LEXEME_STATS, TENANT_STATS):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(stats)))


def _has_stats(conn: psycopg.Connection, table: str) -> bool:
    """Whether the table's statistics exist and are complete (lengths included)."""
    row = conn.execute(
        sql.SQL("SELECT bool_and(total_len IS NOT NULL) FROM {}.{} WHERE table_name = %s").format(
            sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS)
        ),
        (table,),
    ).fetchone()
    return row is not None and row[0] is True


def _update_stats(
    conn: psycopg.Connection, table: str, keys: list[tuple[str, str]], sign: int
) -> None:
    """Add (sign=1) or subtract (sign=-1) the rows with these (tenant_id, doc_id) keys."""
    if not keys:
        return
    rows = sql.SQL(
        "SELECT d.* FROM {}.{} d JOIN unnest(%(t)s::text[], %(d)s::text[]) k(t, d)"
        " ON d.tenant_id = k.t AND d.doc_id = k.d"
    ).format(sql.Identifier(SCHEMA), sql.Identifier(table))
    params = {"table": table, "t": [k[0] for k in keys], "d": [k[1] for k in keys], "sign": sign}
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.{} AS s SELECT %(table)s, r.tenant_id, u.lexeme, %(sign)s * count(*)"
            " FROM ({}) r, unnest(r.tsv) u GROUP BY 2, 3 ON CONFLICT (table_name, tenant_id,"
            " lexeme) DO UPDATE SET ndoc = s.ndoc + EXCLUDED.ndoc"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(LEXEME_STATS), rows),
        params,
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.{} AS s (table_name, tenant_id, ndoc, total_len)"
            " SELECT %(table)s, r.tenant_id, %(sign)s * count(*), %(sign)s * sum({})"
            " FROM ({}) r GROUP BY 2 ON CONFLICT (table_name, tenant_id)"
            " DO UPDATE SET ndoc = s.ndoc + EXCLUDED.ndoc,"
            " total_len = s.total_len + EXCLUDED.total_len"
        ).format(
            sql.Identifier(SCHEMA),
            sql.Identifier(TENANT_STATS),
            sql.SQL(DOC_LENGTH.format("r.tsv")),
            rows,
        ),
        params,
    )
    if sign < 0:
        conn.execute(
            sql.SQL("DELETE FROM {}.{} WHERE table_name = %s AND ndoc <= 0").format(
                sql.Identifier(SCHEMA), sql.Identifier(LEXEME_STATS)
            ),
            (table,),
        )
        # Tenant rows stay (at 0): their presence marks the table's statistics as built.


def _create_indexes(conn: psycopg.Connection, table: str) -> None:
    ident = sql.Identifier(SCHEMA), sql.Identifier(table)
    conn.execute(
        sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
            sql.Literal(BUILD_MAINTENANCE_WORK_MEM)
        )
    )
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {}.{} USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(f"{table}_hnsw"),
            *ident,
            sql.Literal(HNSW_M),
            sql.Literal(HNSW_EF_CONSTRUCTION),
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} USING gin (tenant_id, tsv)").format(
            sql.Identifier(f"{table}_tsv"), *ident
        )
    )
    _create_stats(conn, table)
    conn.execute(sql.SQL("ANALYZE {}.{}").format(*ident))


def _copy_rows(
    conn: psycopg.Connection,
    table: str,
    docs: Sequence[Document],
    vectors: np.ndarray,
    model_version: str,
) -> None:
    columns = (
        "tenant_id",
        "doc_id",
        "type",
        "title",
        "body",
        "tags",
        "tags_text",
        "updated_at",
        "content_hash",
        "model_version",
        "embedding",
    )
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(SCHEMA),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )
    with conn.cursor().copy(stmt) as copy:
        copy.set_types(
            [
                "text",
                "text",
                "text",
                "text",
                "text",
                "text[]",
                "text",
                "timestamptz",
                "text",
                "text",
                "vector",
            ]
        )
        for doc, vec in zip(docs, vectors, strict=True):
            copy.write_row(
                (
                    doc.tenant_id,
                    doc.id,
                    doc.type,
                    doc.title,
                    doc.text,
                    list(doc.tags),
                    " ".join(doc.tags),
                    datetime.fromisoformat(doc.updated_at),
                    content_hash(doc),
                    model_version,
                    vec,
                )
            )


def live_index(conn: psycopg.Connection) -> dict | None:
    """The live index's row; in its own transaction (a savepoint inside the caller's)."""
    with conn.transaction():
        row = conn.execute(
            sql.SQL(
                "SELECT table_name, model_version, dim, corpus_sha256, switched_at"
                " FROM {}.live_index WHERE name = 'default'"
            ).format(sql.Identifier(SCHEMA))
        ).fetchone()
    if row is None:
        return None
    keys = ("table_name", "model_version", "dim", "corpus_sha256", "switched_at")
    return dict(zip(keys, row, strict=True))


# What each lock the switch takes waits for: the modes that others' granted locks conflict with.
_STRONG_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
_SWITCH_CONFLICTS: dict[str, tuple[str, ...]] = {
    # CREATE OR REPLACE VIEW takes AccessExclusiveLock: every reader's lock is in its way.
    f"{SCHEMA}.{LIVE_VIEW}": (
        "AccessShareLock",
        "RowShareLock",
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        *_STRONG_MODES,
    ),
    f"{SCHEMA}.live_index": _STRONG_MODES,
    # events.append inserts (RowExclusiveLock) after CREATE INDEX IF NOT EXISTS (ShareLock).
    f"{events.EVENTS_SCHEMA}.events": (
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        *_STRONG_MODES,
    ),
}
QUERY_TEXT_CHARS = 200


def lock_holders(conn: psycopg.Connection) -> list[dict]:
    """Other sessions holding locks that the index switch would wait for (pg_stat_activity)."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT l.pid, l.relation::regclass::text, l.mode, a.state, a.application_name,"
            " extract(epoch FROM now() - a.state_change)::float8, left(a.query, %s)"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.relation IN (SELECT to_regclass(n) FROM unnest(%s::text[]) n)"
            " ORDER BY l.pid, 2, 3",
            (QUERY_TEXT_CHARS, list(_SWITCH_CONFLICTS)),
        ).fetchall()
    keys = ("pid", "relation", "mode", "state", "application_name", "state_seconds", "query")
    return [
        dict(zip(keys, r, strict=True)) for r in rows if r[2] in _SWITCH_CONFLICTS.get(r[1], ())
    ]


def _describe(holder: dict) -> str:
    seconds = holder["state_seconds"]
    since = "" if seconds is None else f" for {seconds:.1f} s"
    return (
        f"pid {holder['pid']} ({holder['state'] or 'unknown state'}{since}, application "
        f"{holder['application_name']!r}, holds {holder['mode']} on {holder['relation']}): "
        f"{holder['query']!r}"
    )


def _switch(
    conn: psycopg.Connection,
    table: str,
    model_version: str,
    dim: int,
    corpus_sha256: str,
    *,
    replace_view: bool,
    event: dict,
    lock_timeout_s: float,
    attempts: int,
    backoff_s: float,
) -> None:
    """Point the live view at `table`, record it and append `event`, all or nothing.

    Runs in a savepoint of the caller's transaction (the caller commits) or, outside one, in
    its own. Each attempt waits at most `lock_timeout_s` for its locks; a timed-out attempt
    is rolled back alone, and after `attempts` of them IndexLockTimeout names the holders.
    """
    holders: list[dict] = []
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                # SET LOCAL: the timeout ends with the transaction, the reindex's other
                # statements keep the server's default.
                conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{max(1, round(lock_timeout_s * 1000))}ms")
                    )
                )
                if replace_view:
                    conn.execute(
                        sql.SQL("CREATE OR REPLACE VIEW {}.{} AS SELECT * FROM {}.{}").format(
                            sql.Identifier(SCHEMA),
                            sql.Identifier(LIVE_VIEW),
                            sql.Identifier(SCHEMA),
                            sql.Identifier(table),
                        )
                    )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.live_index VALUES ('default', %s, %s, %s, %s, now())"
                        " ON CONFLICT (name) DO UPDATE SET table_name = EXCLUDED.table_name,"
                        " model_version = EXCLUDED.model_version, dim = EXCLUDED.dim,"
                        " corpus_sha256 = EXCLUDED.corpus_sha256,"
                        " switched_at = EXCLUDED.switched_at"
                    ).format(sql.Identifier(SCHEMA)),
                    (table, model_version, dim, corpus_sha256),
                )
                events.append(conn, event, EVENT_SUBJECT)
            return
        except psycopg.errors.LockNotAvailable:
            holders = lock_holders(conn)
            if attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    previous = event["previous_table"]
    serving = f"{SCHEMA}.{previous}" if previous else "no index yet"
    named = "; ".join(map(_describe, holders)) or (
        "none found any more (the holder ended between the timeout and the lookup)"
    )
    raise IndexLockTimeout(
        f"the switch of {EVENT_SUBJECT} to {SCHEMA}.{table} did not get its locks in "
        f"{attempts} attempts of lock_timeout {lock_timeout_s:g} s, so nothing was switched "
        f"and search still serves {serving}. Sessions holding the locks: {named}. "
        "A session 'idle in transaction' is a client that never committed: fix or restart "
        "that client, or end the session (SELECT pg_terminate_backend(<pid>)), then run the "
        "reindex again (a table already built is kept: the rerun only switches to it)."
    )


def _table_exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (SCHEMA, table),
    ).fetchone()
    return row is not None


def _table_dim(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attname = 'embedding'",
        (f"{SCHEMA}.{table}",),
    ).fetchone()
    return int(row[0])


def _embed(embedder: Embedder, docs: Sequence[Document]) -> tuple[np.ndarray, int]:
    if not docs:
        return np.zeros((0, embedder.dim), dtype=np.float32), 0
    vectors = embedder.embed([embedding_text(d) for d in docs])
    truncated = int(getattr(embedder, "last_truncated", 0))
    if vectors.shape != (len(docs), embedder.dim) or not np.all(np.isfinite(vectors)):
        raise ValueError(
            f"the embedder returned {vectors.shape} (finite: {np.all(np.isfinite(vectors))}); "
            f"expected ({len(docs)}, {embedder.dim})"
        )
    return vectors.astype(np.float32), truncated


def reindex(
    dsn: str,
    docs: Sequence[Document],
    embedder: Embedder,
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None] = lambda _msg: None,
    *,
    lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S,
    switch_attempts: int = SWITCH_ATTEMPTS,
    switch_backoff_s: float = SWITCH_BACKOFF_S,
) -> IndexStats:
    """Bring the index for `model_version` in line with `docs` and make it live.

    The table of the model version is built beside the live one when it does not exist yet
    (a full build, switched to in one transaction), or updated in place when it does: only
    documents whose content hash changed are embedded, removed ones are deleted, all in one
    transaction. Each change appends a `search.index.updated.v1` event in that transaction; a
    reindex that changes nothing appends none. The switch waits at most `lock_timeout_s` per
    attempt, `switch_attempts` times (backoff doubling from `switch_backoff_s`), then raises
    IndexLockTimeout with the live index unchanged. Raises ReindexBusyError while another
    reindex runs.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", model_version):
        raise ValueError(
            f"model_version must be the embedder's sha256 (64 hex digits), got {model_version!r}"
        )
    if lock_timeout_s <= 0 or switch_attempts < 1 or switch_backoff_s < 0:
        raise ValueError(
            "lock_timeout_s must be > 0, switch_attempts >= 1 and switch_backoff_s >= 0; got "
            f"{lock_timeout_s}, {switch_attempts}, {switch_backoff_s}"
        )
    started = time.perf_counter()
    table = table_name(model_version)
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
            return _reindex_locked(
                conn, table, docs, embedder, model_version, corpus_sha256, log, started, switch
            )
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


def _view_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (EVENT_SUBJECT,)).fetchone()
    return row is not None and row[0] is not None


def _reindex_locked(
    conn: psycopg.Connection,
    table: str,
    docs: Sequence[Document],
    embedder: Embedder,
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None],
    started: float,
    switch: Callable[..., None],
) -> IndexStats:
    if _table_exists(conn, table):
        dim = _table_dim(conn, table)
        if dim != embedder.dim:
            raise ValueError(
                f"table {SCHEMA}.{table} holds vector({dim}) but the embedder gives "
                f"{embedder.dim} dimensions; the model version does not match its table"
            )
        if not _has_stats(conn, table):
            # A table built before the statistics (or their lengths) existed: count once,
            # then keep in step.
            log(f"building lexeme and tenant statistics for {SCHEMA}.{table}")
            _create_stats(conn, table)
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
        wanted = {(d.tenant_id, d.id): d for d in docs}
        changed = [d for key, d in wanted.items() if existing.get(key) != content_hash(d)]
        removed = [key for key in existing if key not in wanted]
        log(
            f"incremental: {len(changed)} new or changed, {len(removed)} removed, "
            f"{len(wanted) - len(changed)} unchanged"
        )
        vectors, truncated = _embed(embedder, changed)
        updated = [(d.tenant_id, d.id) for d in changed if (d.tenant_id, d.id) in existing]
        gone = removed + updated
        _update_stats(conn, table, gone, -1)
        conn.execute(
            sql.SQL(
                "DELETE FROM {}.{} d USING unnest(%s::text[], %s::text[]) k(t, d)"
                " WHERE d.tenant_id = k.t AND d.doc_id = k.d"
            ).format(sql.Identifier(SCHEMA), sql.Identifier(table)),
            ([k[0] for k in gone], [k[1] for k in gone]),
        )
        _copy_rows(conn, table, changed, vectors, model_version)
        _update_stats(conn, table, [(d.tenant_id, d.id) for d in changed], 1)
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
        event = None
        if kind is not None:
            event = _index_event(
                kind, table, model_version, dim, corpus_sha256, live, counts, list(wanted.values())
            )
            # The view already reads `table` unless the live index moves: replacing it anyway
            # would make an in-place update wait for every reader's lock.
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
            # Same documents under another corpus version: record it, the index is unchanged.
            conn.execute(
                sql.SQL(
                    "UPDATE {}.live_index SET corpus_sha256 = %s WHERE name = 'default'"
                ).format(sql.Identifier(SCHEMA)),
                (corpus_sha256,),
            )
        conn.commit()
        return IndexStats(
            table=table,
            model_version=model_version,
            mode="incremental",
            embedded=len(changed),
            deleted=len(removed),
            unchanged=len(wanted) - len(changed),
            total=len(wanted),
            truncated=truncated,
            seconds=time.perf_counter() - started,
            switched=switched,
            added=counts["added"],
            updated=counts["updated"],
            kind=kind,
            event_id=None if event is None else event["event_id"],
        )

    conn.commit()
    log(f"full build of {SCHEMA}.{table}: embedding {len(docs)} documents")
    vectors, truncated = _embed(embedder, docs)
    _create_table(conn, table, embedder.dim)
    _copy_rows(conn, table, docs, vectors, model_version)
    conn.commit()
    log("building HNSW and full-text indexes")
    _create_indexes(conn, table)
    conn.commit()
    live = live_index(conn)
    counts = {"total": len(docs), "added": len(docs), "updated": 0, "deleted": 0, "unchanged": 0}
    event = _index_event(
        "full", table, model_version, embedder.dim, corpus_sha256, live, counts, docs
    )
    switch(conn, table, model_version, embedder.dim, corpus_sha256, replace_view=True, event=event)
    return IndexStats(
        table=table,
        model_version=model_version,
        mode="full",
        embedded=len(docs),
        deleted=0,
        unchanged=0,
        total=len(docs),
        truncated=truncated,
        seconds=time.perf_counter() - started,
        switched=True,
        added=len(docs),
        updated=0,
        kind="full",
        event_id=event["event_id"],
    )
