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
# Lexical search ranks at most this many documents: those holding the query's rarest lexemes.
LEXICAL_CANDIDATES = 1000
# Vector search scans a tenant with at most this many documents exactly (recall 1.0).
EXACT_SCAN_MAX_DOCS = 2_000
DEFAULT_EF_SEARCH = 100


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

# The query's stemmed lexemes with their document frequency in the tenant (search.lexeme_stats
# for the live table, kept in step with it by reindex). Each lexeme is written in tsquery
# syntax: quoted, with quotes and backslashes doubled, so whatever the parser emits casts safely.
_TERMS = r"""
terms AS (
  SELECT '''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''' AS quoted,
         coalesce(s.ndoc, 0) AS ndoc,
         sum(coalesce(s.ndoc, 0)) OVER (ORDER BY coalesce(s.ndoc, 0), l.lexeme) AS cum
  FROM unnest(tsvector_to_array(to_tsvector('english', %(q)s))) AS l(lexeme)
  LEFT JOIN search.lexeme_stats s ON s.table_name = (SELECT table_name FROM search.live_index
    WHERE name = 'default') AND s.tenant_id = %(tenant)s AND s.lexeme = l.lexeme
),
q AS (
  SELECT
    coalesce((SELECT string_agg(quoted, ' | ') FROM terms), '__nothing__')::tsquery AS tsq,
    coalesce((SELECT string_agg(quoted, ' | ') FROM terms
              WHERE ndoc > 0 AND (cum <= %(lex_budget)s OR cum = ndoc)),
             '__nothing__')::tsquery AS cand
)
"""

# Ranked lexical matches (CTE `lex_ranked`). Scoring uses `tsq`, an OR over all the query's
# lexemes: websearch_to_tsquery's implicit AND finds almost nothing for natural-language
# questions, and ts_rank_cd rewards documents matching many. Candidates come from `cand`, the
# rarest lexemes the tenant holds while their document frequencies sum to at most
# %(lex_budget)s (the rarest one always): common lexemes still score the candidates, but do
# not make most of the tenant a candidate to rank. The (tenant_id, tsv) GIN index finds them;
# LIMIT bounds the case where even the rarest lexeme is common.
_LEXICAL = """
lex_ranked AS (
  SELECT c.doc_id, ts_rank_cd(c.tsv, q.tsq) AS score FROM q, LATERAL (
    SELECT d.doc_id, d.tsv FROM search.live_documents d
    WHERE d.tsv @@ q.cand AND {filters} LIMIT %(lex_budget)s) c
  ORDER BY score DESC, c.doc_id LIMIT %(lex_limit)s
)
"""

# Nearest neighbours (CTE `vec_ranked`). A tenant with at most %(exact_max)s documents is
# scanned exactly (`+ 0` keeps the planner off HNSW: a graph walk filtered to a small tenant
# visits mostly other tenants' rows and still misses neighbours); a larger tenant walks the
# HNSW graph with iterative scans. Only one branch runs: the other's one-time filter is false.
_VECTOR = """
tenant_size AS MATERIALIZED (
  SELECT coalesce((SELECT ndoc FROM search.tenant_stats WHERE tenant_id = %(tenant)s
    AND table_name = (SELECT table_name FROM search.live_index WHERE name = 'default')), 0) AS n
),
vec_ranked AS (
  (SELECT doc_id, embedding <=> %(qvec)s AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant_size) > %(exact_max)s
   ORDER BY embedding <=> %(qvec)s LIMIT %(vec_limit)s)
  UNION ALL
  (SELECT doc_id, (embedding <=> %(qvec)s) + 0 AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant_size) <= %(exact_max)s
   ORDER BY 2 LIMIT %(vec_limit)s)
)
"""


def _compose(template: str) -> sql.Composed:
    """Fill the fixed fragments into a statement; values stay bound parameters."""
    frags = {"terms": _TERMS, "lexical": _LEXICAL, "vector": _VECTOR}
    filled = {k: sql.SQL(v).format(filters=sql.SQL(_FILTERS)) for k, v in frags.items()}
    return sql.SQL(template).format(**filled)


VECTOR_SQL = _compose("""
WITH {vector}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, 1 - v.dist AS score,
       row_number() OVER (ORDER BY v.dist, d.doc_id) AS vector_rank,
       NULL::bigint AS lexical_rank
FROM vec_ranked v JOIN search.live_documents d
  ON d.doc_id = v.doc_id AND d.tenant_id = %(tenant)s
ORDER BY vector_rank
""")

LEXICAL_SQL = _compose("""
WITH {terms}, {lexical}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, l.score, NULL::bigint AS vector_rank,
       row_number() OVER (ORDER BY l.score DESC, l.doc_id) AS lexical_rank
FROM lex_ranked l JOIN search.live_documents d
  ON d.doc_id = l.doc_id AND d.tenant_id = %(tenant)s
ORDER BY lexical_rank
""")

HYBRID_SQL = _compose("""
WITH {terms}, {lexical}, {vector},
vec AS (SELECT doc_id, row_number() OVER (ORDER BY dist, doc_id) AS rnk FROM vec_ranked),
lex AS (SELECT doc_id, row_number() OVER (ORDER BY score DESC, doc_id) AS rnk FROM lex_ranked),
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
    ef_search: int = DEFAULT_EF_SEARCH,
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS,
) -> list[SearchHit]:
    """Run one mode's statement on `conn` (vector/hybrid need the query's embedding).

    `exact_scan_max_docs`: tenants up to this size get an exact vector scan instead of HNSW
    (0 forces HNSW for every tenant, e.g. to measure the graph's own recall).
    """
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
        "vec_limit": limit if mode == "vector" else max(fusion.candidates, limit),
        "lex_limit": limit if mode == "lexical" else max(fusion.candidates, limit),
        "lex_budget": max(LEXICAL_CANDIDATES, limit),
        "exact_max": exact_scan_max_docs,
        "w_vec": float(fusion.vector),
        "w_lex": float(fusion.lexical),
        "k": float(fusion.k),
    }
    with conn.transaction():
        # Per transaction: iterative scans keep filtered HNSW results complete.
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        # A search is a few milliseconds of work: starting parallel workers (which Postgres
        # does for the exact-scan branch even when its one-time filter skips it) costs more.
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
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
