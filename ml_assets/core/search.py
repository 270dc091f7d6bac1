"""Search over the live index: vector, lexical and hybrid, one SQL statement per mode.

The tenant filter is a bound parameter in every statement's WHERE clause: no query can reach
another tenant's rows. Filtered vector search uses pgvector's iterative HNSW scan, so a small
tenant still gets `limit` results (pgvector issues 259/671).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import psycopg
from psycopg import sql

from ml_assets.core.search_index import Embedder, connect

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "lexical")
MAX_LIMIT = 100


@dataclass(frozen=True)
class FusionWeights:
    """Weighted reciprocal rank fusion: score = w_v/(k + rank_v) + w_l/(k + rank_l)."""

    vector: float = 1.0
    lexical: float = 0.5
    k: int = 60
    candidates: int = 50


DEFAULT_FUSION = FusionWeights()


@dataclass(frozen=True)
class SearchHit:
    doc_id: str
    tenant_id: str
    type: str
    title: str
    tags: tuple[str, ...]
    score: float
    vector_rank: int | None
    lexical_rank: int | None


class UnknownTenantError(LookupError):
    """The tenant has no documents in the live index."""


_FILTERS = """
  tenant_id = %(tenant)s
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(tags)s::text[] IS NULL OR tags && %(tags)s::text[])
"""

# An OR over the query's stemmed lexemes: websearch_to_tsquery's implicit AND finds almost
# nothing for natural-language questions; ts_rank_cd still rewards documents matching many.
_TSQUERY = """
  (SELECT coalesce(nullif(array_to_string(tsvector_to_array(to_tsvector('english', %(q)s)),
   ' | '), ''), '__nothing__')::tsquery)
"""


def _compose(template: str) -> sql.Composed:
    """Fill the fixed fragments into a statement; values stay bound parameters."""
    return sql.SQL(template).format(filters=sql.SQL(_FILTERS), tsquery=sql.SQL(_TSQUERY))


VECTOR_SQL = _compose("""
SELECT doc_id, tenant_id, type, title, tags, 1 - dist AS score, rnk AS vector_rank,
       NULL::bigint AS lexical_rank
FROM (
  SELECT *, row_number() OVER (ORDER BY dist) AS rnk FROM (
    SELECT doc_id, tenant_id, type, title, tags, embedding <=> %(qvec)s AS dist
    FROM search.live_documents WHERE {filters}
    ORDER BY embedding <=> %(qvec)s LIMIT %(limit)s) v
) ranked ORDER BY rnk
""")

LEXICAL_SQL = _compose("""
WITH q AS (SELECT {tsquery} AS tsq)
SELECT doc_id, tenant_id, type, title, tags, score, NULL::bigint AS vector_rank,
       row_number() OVER (ORDER BY score DESC, doc_id) AS lexical_rank
FROM (
  SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, ts_rank_cd(d.tsv, q.tsq) AS score
  FROM search.live_documents d, q WHERE d.tsv @@ q.tsq AND {filters}
  ORDER BY score DESC, d.doc_id LIMIT %(limit)s) l
ORDER BY lexical_rank
""")

HYBRID_SQL = _compose("""
WITH q AS (SELECT {tsquery} AS tsq),
vec AS (
  SELECT doc_id, row_number() OVER (ORDER BY dist) AS rnk FROM (
    SELECT doc_id, embedding <=> %(qvec)s AS dist FROM search.live_documents
    WHERE {filters} ORDER BY embedding <=> %(qvec)s LIMIT %(candidates)s) v
),
lex AS (
  SELECT doc_id, row_number() OVER (ORDER BY score DESC, doc_id) AS rnk FROM (
    SELECT d.doc_id, ts_rank_cd(d.tsv, q.tsq) AS score FROM search.live_documents d, q
    WHERE d.tsv @@ q.tsq AND {filters} ORDER BY score DESC, d.doc_id
    LIMIT %(candidates)s) l
),
fused AS (
  SELECT coalesce(vec.doc_id, lex.doc_id) AS doc_id, vec.rnk AS vector_rank,
         lex.rnk AS lexical_rank,
         coalesce(%(w_vec)s / (%(k)s + vec.rnk), 0)
           + coalesce(%(w_lex)s / (%(k)s + lex.rnk), 0) AS score
  FROM vec FULL OUTER JOIN lex ON vec.doc_id = lex.doc_id
)
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, f.score, f.vector_rank, f.lexical_rank
FROM fused f JOIN search.live_documents d ON d.doc_id = f.doc_id AND d.tenant_id = %(tenant)s
ORDER BY f.score DESC, d.doc_id LIMIT %(limit)s
""")

_SQL: dict[str, sql.Composed] = {"vector": VECTOR_SQL, "lexical": LEXICAL_SQL, "hybrid": HYBRID_SQL}


def _validate(query: str, tenant_id: str, limit: int, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not tenant_id:
        raise ValueError("tenant_id is required")
    if not query or not query.strip():
        raise ValueError("query must not be empty")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}, got {limit}")


def run_search(
    conn: psycopg.Connection,
    query: str,
    query_vector: np.ndarray | None,
    tenant_id: str,
    *,
    types: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    limit: int = 10,
    mode: Mode = "hybrid",
    fusion: FusionWeights = DEFAULT_FUSION,
    ef_search: int = 100,
) -> list[SearchHit]:
    """Run one mode's statement on `conn` (vector/hybrid need the query's embedding)."""
    _validate(query, tenant_id, limit, mode)
    if mode != "lexical" and query_vector is None:
        raise ValueError(f"mode {mode!r} needs the query's embedding")
    params = {
        "q": query,
        "qvec": None if query_vector is None else np.asarray(query_vector, dtype=np.float32),
        "tenant": tenant_id,
        "types": list(types) if types else None,
        "tags": list(tags) if tags else None,
        "limit": limit,
        "candidates": max(fusion.candidates, limit),
        "w_vec": float(fusion.vector),
        "w_lex": float(fusion.lexical),
        "k": float(fusion.k),
    }
    with conn.transaction():
        # Per transaction: iterative scans keep filtered HNSW results complete.
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
        rows = conn.execute(_SQL[mode], params).fetchall()
    return [
        SearchHit(
            r[0],
            r[1],
            r[2],
            r[3],
            tuple(r[4]),
            float(r[5]),
            None if r[6] is None else int(r[6]),
            None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


def tenant_exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM search.live_documents WHERE tenant_id = %s)", (tenant_id,)
    ).fetchone()
    return bool(row and row[0])


def search(
    dsn_or_conn: str | psycopg.Connection,
    embedder: Embedder,
    query: str,
    tenant_id: str,
    *,
    types: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    limit: int = 10,
    mode: Mode = "hybrid",
    fusion: FusionWeights = DEFAULT_FUSION,
) -> list[SearchHit]:
    """Search the live index for one tenant; raises UnknownTenantError for a tenant with no rows."""
    _validate(query, tenant_id, limit, mode)
    qvec = None if mode == "lexical" else embedder.embed([query])[0]
    own = isinstance(dsn_or_conn, str)
    conn = connect(dsn_or_conn) if own else dsn_or_conn
    try:
        hits = run_search(
            conn,
            query,
            qvec,
            tenant_id,
            types=types,
            tags=tags,
            limit=limit,
            mode=mode,
            fusion=fusion,
        )
        if not hits and not tenant_exists(conn, tenant_id):
            raise UnknownTenantError(f"tenant {tenant_id!r} has no documents in the index")
        return hits
    finally:
        if own:
            conn.close()
