"""The pgvector index: one table per embedding-model version, a live view switched atomically.

Layout (schema `search` in the ml_assets database):
- `search.docs_<model>`: one row per (tenant_id, doc_id) with the embedding (HNSW, cosine),
  a weighted tsvector (GIN) and the document's content hash.
- `search.lexeme_stats`: per table and tenant, how many documents hold each lexeme (kept in
  step with the table in the same transaction); lexical search ranks only the documents that
  hold the query's rarer lexemes, so its cost stays bounded at any corpus size.
- `search.tenant_stats`: documents per table and tenant; vector search scans a small tenant
  exactly instead of filtering a graph walk over everyone's documents.
- `search.live_documents`: a view over the table that search reads (it finds the statistics by
  the table name in `search.live_index`); replacing the view and that row happens in one
  transaction, so a reader sees the old index or the new one, never a half-built one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

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


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


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


def table_name(model_version: str) -> str:
    """A table per model version, named from the model's sha256."""
    if not model_version.isalnum():
        raise ValueError(f"model_version must be a hex digest, got {model_version!r}")
    return f"docs_{model_version[:16]}"


def embedding_text(doc: Document) -> str:
    return f"{doc.title}. {doc.text}"


def connect(dsn: str) -> psycopg.Connection:
    """A connection with pgvector's types registered (the extension is created if missing)."""
    conn = psycopg.connect(dsn)
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
            " ndoc int NOT NULL, PRIMARY KEY (table_name, tenant_id))"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS))
    )
    conn.commit()


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
        sql.SQL("INSERT INTO {}.{} SELECT %s, tenant_id, count(*) FROM {}.{} GROUP BY 2").format(
            sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS), *src
        ),
        (table,),
    )
    for stats in (LEXEME_STATS, TENANT_STATS):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(stats)))


def _has_stats(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute(
        sql.SQL("SELECT 1 FROM {}.{} WHERE table_name = %s LIMIT 1").format(
            sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS)
        ),
        (table,),
    ).fetchone()
    return row is not None


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
            "INSERT INTO {}.{} AS s SELECT %(table)s, r.tenant_id, %(sign)s * count(*)"
            " FROM ({}) r GROUP BY 2 ON CONFLICT (table_name, tenant_id)"
            " DO UPDATE SET ndoc = s.ndoc + EXCLUDED.ndoc"
        ).format(sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS), rows),
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


def _switch(
    conn: psycopg.Connection, table: str, model_version: str, dim: int, corpus_sha256: str
) -> None:
    """Point the live view at `table`; the caller commits, so readers switch at once."""
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
            " corpus_sha256 = EXCLUDED.corpus_sha256, switched_at = EXCLUDED.switched_at"
        ).format(sql.Identifier(SCHEMA)),
        (table, model_version, dim, corpus_sha256),
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
) -> IndexStats:
    """Bring the index for `model_version` in line with `docs` and make it live.

    The table of the model version is built beside the live one when it does not exist yet
    (a full build, switched to in one transaction), or updated in place when it does: only
    documents whose content hash changed are embedded, removed ones are deleted, all in one
    transaction. Raises ReindexBusyError while another reindex runs.
    """
    started = time.perf_counter()
    table = table_name(model_version)
    with connect(dsn) as conn:
        ensure_schema(conn)
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK_KEY,)).fetchone()
        if not locked or not locked[0]:
            raise ReindexBusyError(
                "another reindex holds the index lock; wait for it to finish and run again"
            )
        try:
            return _reindex_locked(
                conn, table, docs, embedder, model_version, corpus_sha256, log, started
            )
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (REINDEX_LOCK_KEY,))
            conn.commit()


def _reindex_locked(
    conn: psycopg.Connection,
    table: str,
    docs: Sequence[Document],
    embedder: Embedder,
    model_version: str,
    corpus_sha256: str,
    log: Callable[[str], None],
    started: float,
) -> IndexStats:
    if _table_exists(conn, table):
        dim = _table_dim(conn, table)
        if dim != embedder.dim:
            raise ValueError(
                f"table {SCHEMA}.{table} holds vector({dim}) but the embedder gives "
                f"{embedder.dim} dimensions; the model version does not match its table"
            )
        if not _has_stats(conn, table):
            # A table built before the statistics existed: count once, then keep in step.
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
        wanted = {(d.tenant_id, d.id): d for d in docs}
        changed = [d for key, d in wanted.items() if existing.get(key) != content_hash(d)]
        removed = [key for key in existing if key not in wanted]
        log(
            f"incremental: {len(changed)} new or changed, {len(removed)} removed, "
            f"{len(wanted) - len(changed)} unchanged"
        )
        vectors, truncated = _embed(embedder, changed)
        gone = removed + [(d.tenant_id, d.id) for d in changed if (d.tenant_id, d.id) in existing]
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
        _switch(conn, table, model_version, dim, corpus_sha256)
        conn.commit()
        return IndexStats(
            table,
            model_version,
            "incremental",
            len(changed),
            len(removed),
            len(wanted) - len(changed),
            len(wanted),
            truncated,
            time.perf_counter() - started,
            switched,
        )

    log(f"full build of {SCHEMA}.{table}: embedding {len(docs)} documents")
    vectors, truncated = _embed(embedder, docs)
    _create_table(conn, table, embedder.dim)
    _copy_rows(conn, table, docs, vectors, model_version)
    conn.commit()
    log("building HNSW and full-text indexes")
    _create_indexes(conn, table)
    conn.commit()
    _switch(conn, table, model_version, embedder.dim, corpus_sha256)
    conn.commit()
    return IndexStats(
        table,
        model_version,
        "full",
        len(docs),
        0,
        0,
        len(docs),
        truncated,
        time.perf_counter() - started,
        True,
    )
