"""The index's tables in Postgres: DDL, per-tenant statistics, row copies, connections.

Layout (schema `search` in the ml_assets database):
- `search.docs_<model><layout>`: one row per (tenant_id, doc_id) with the embedding (HNSW,
  cosine), a weighted tsvector (GIN; identifiers also split into words, `document_tsvector`)
  and the document's content hash.
- `search.lexeme_stats`: per table and tenant, how many documents hold each lexeme (kept in
  step with the table in the same transaction); lexical search ranks only the documents that
  hold the query's rarer lexemes, so its cost stays bounded at any corpus size.
- `search.tenant_stats`: documents per table and tenant, and their summed length (distinct
  lexemes); vector search scans a small tenant exactly instead of filtering a graph walk
  over everyone's documents, and BM25 normalises by the tenant's average document length.
- `search.live_documents`: a view over the table that search reads (it finds the statistics by
  the table name in `search.live_index`); replacing the view and that row happens in one
  transaction, so a reader sees the old index or the new one, never a half-built one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from ml_assets.search.corpus import Document, content_hash

SCHEMA = "search"
LIVE_VIEW = "live_documents"
# Statistics of every index table, keyed by table name: search joins them on the live table's
# name from live_index, so the switch replaces one view only (readers lock nothing else that
# the switch locks: no lock-order deadlock with running searches).
LEXEME_STATS = "lexeme_stats"
TENANT_STATS = "tenant_stats"
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 200
# The HNSW build is several times faster when its graph fits in memory (100,000 x 384 fits).
BUILD_MAINTENANCE_WORK_MEM = "1GB"
CONNECT_TIMEOUT_S = 10
EVENT_SUBJECT = f"{SCHEMA}.{LIVE_VIEW}"
# The layout of an index table (its tsvector), part of its name: a table of another layout is
# rebuilt beside it and switched to, never updated in place with rows of two layouts.
# 2: identifiers split into words (IDENTIFIER_WORDS), the title counted twice.
LAYOUT_VERSION = 2


def table_name(model_version: str) -> str:
    """A table per model version and layout, named from the model's sha256."""
    if not model_version.isalnum():
        raise ValueError(f"model_version must be a hex digest, got {model_version!r}")
    # 16 characters after "docs_", as the index event's schema allows: the digest's first
    # hex digits, then "l" and the layout (not a hex digit: no clash with layout 1's
    # "docs_<16 hex digits>").
    layout = f"l{LAYOUT_VERSION}"
    return f"docs_{model_version[: 16 - len(layout)]}{layout}"


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

# Postgres' parser keeps `os.path.join` or `json.dumps` as one token (a host or file name) and
# `RawConfigParser` as one word, so a query for "join path" or "json" never meets them. Each
# document field and the query are also parsed with dots and underscores as spaces and camel
# case split ("RawConfigParser" -> "Raw Config Parser", "JSONEncoder" -> "JSON Encoder"); the
# lexemes that adds (the parts of identifiers) join the field's own, which stay as they were.
IDENTIFIER_WORDS = (
    "translate(regexp_replace(regexp_replace({x}, '([a-z0-9])([A-Z])', '\\1 \\2', 'g'),"
    " '([A-Z]+)([A-Z][a-z])', '\\1 \\2', 'g'), '._', '  ')"
)
# The title's lexemes count this many times in a document's term frequencies (BM25 scores
# positions, not the A/B/C weights): a docstring's title is the name of what it documents.
# Chosen on the tune splits of both labelled sets (1, 2 and 3 tried).
TITLE_REPEATS = 2


def lexical_tsvector(x: str) -> str:
    """The SQL tsvector of the text expression `x` as the index parses a field and a query:
    its own lexemes and those its identifiers' parts add."""
    whole = f"to_tsvector('english', {x})"
    parts = f"to_tsvector('english', {IDENTIFIER_WORDS.format(x=x)})"
    return f"({whole} || ts_delete({parts}, tsvector_to_array({whole})))"


def document_tsvector() -> str:
    """The generated `tsv` column's expression: title (weight A, TITLE_REPEATS times), tags
    (B) and body (C); a tsvector joined with itself doubles each lexeme's positions."""
    title = " || ".join([lexical_tsvector("title")] * TITLE_REPEATS)
    return (
        f"setweight({title}, 'A') || setweight({lexical_tsvector('tags_text')}, 'B')"
        f" || setweight({lexical_tsvector('body')}, 'C')"
    )


def create_table(conn: psycopg.Connection, table: str, dim: int) -> None:
    """Create an index table for vectors of `dim` dimensions, with its generated tsvector."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} ("
            " tenant_id text NOT NULL, doc_id text NOT NULL, type text NOT NULL,"
            " title text NOT NULL, body text NOT NULL, tags text[] NOT NULL,"
            " tags_text text NOT NULL,"
            " updated_at timestamptz NOT NULL, content_hash text NOT NULL,"
            " model_version text NOT NULL, embedding vector({}) NOT NULL,"
            " tsv tsvector GENERATED ALWAYS AS ({}) STORED,"
            " PRIMARY KEY (tenant_id, doc_id))"
        ).format(
            sql.Identifier(SCHEMA),
            sql.Identifier(table),
            sql.Literal(dim),
            sql.SQL(document_tsvector()),
        )
    )


def create_stats(conn: psycopg.Connection, table: str) -> None:
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


def has_stats(conn: psycopg.Connection, table: str) -> bool:
    """Whether the table's statistics exist and are complete (lengths included)."""
    row = conn.execute(
        sql.SQL("SELECT bool_and(total_len IS NOT NULL) FROM {}.{} WHERE table_name = %s").format(
            sql.Identifier(SCHEMA), sql.Identifier(TENANT_STATS)
        ),
        (table,),
    ).fetchone()
    return row is not None and row[0] is True


def update_stats(
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


def create_indexes(conn: psycopg.Connection, table: str) -> None:
    """Build the HNSW and GIN indexes and the statistics of a filled table, then ANALYZE it."""
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
    create_stats(conn, table)
    conn.execute(sql.SQL("ANALYZE {}.{}").format(*ident))


# Every column a document fills in an index or staging table, with its binary COPY type.
COPY_TYPES = {
    "tenant_id": "text", "doc_id": "text", "shard": "text", "type": "text", "title": "text",
    "body": "text", "tags": "text[]", "tags_text": "text", "updated_at": "timestamptz",
    "content_hash": "text", "model_version": "text", "embedding": "vector",
}  # fmt: skip
INDEX_COLUMNS = (
    "tenant_id", "doc_id", "type", "title", "body", "tags", "tags_text", "updated_at",
    "content_hash", "model_version", "embedding",
)  # fmt: skip


def copy_rows(
    conn: psycopg.Connection,
    table: str,
    docs: Sequence[Document],
    vectors: np.ndarray,
    model_version: str,
    *,
    columns: Sequence[str] = INDEX_COLUMNS,
    fixed: Mapping[str, str] | None = None,
) -> None:
    """Write these documents and their vectors into `table` by binary COPY, one row each.

    `columns` name the table's columns (keys of COPY_TYPES); `fixed` gives the same value to
    every row for columns that are not the document's (a staging table's shard).
    """
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(SCHEMA),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )
    with conn.cursor().copy(stmt) as copy:
        copy.set_types([COPY_TYPES[c] for c in columns])
        for doc, vec in zip(docs, vectors, strict=True):
            values = {
                "tenant_id": doc.tenant_id,
                "doc_id": doc.id,
                "type": doc.type,
                "title": doc.title,
                "body": doc.text,
                "tags": list(doc.tags),
                "tags_text": " ".join(doc.tags),
                "updated_at": datetime.fromisoformat(doc.updated_at),
                "content_hash": content_hash(doc),
                "model_version": model_version,
                "embedding": vec,
                **(fixed or {}),
            }
            copy.write_row(tuple(values[c] for c in columns))


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    """Whether the index table exists in the search schema."""
    row = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (SCHEMA, table),
    ).fetchone()
    return row is not None


def table_dim(conn: psycopg.Connection, table: str) -> int:
    """The vector dimension of a table's embedding column."""
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attname = 'embedding'",
        (f"{SCHEMA}.{table}",),
    ).fetchone()
    return int(row[0])


def view_exists(conn: psycopg.Connection) -> bool:
    """Whether the live view exists."""
    row = conn.execute("SELECT to_regclass(%s)", (EVENT_SUBJECT,)).fetchone()
    return row is not None and row[0] is not None
