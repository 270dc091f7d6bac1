"""The SQL of search: one statement per mode (and ranker and fusion method), built from fixed
fragments, with every value a bound parameter and the tenant in every WHERE."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from ml_assets.search.config import (
    DEFAULT_EF_SEARCH,
    DEFAULT_FUSION,
    EXACT_SCAN_MAX_DOCS,
    FUSION_METHODS,
    MAX_LIMIT,
    MODES,
    QUERY_TERMS_CAP,
    RANKERS,
    FusionWeights,
    Mode,
)
from ml_assets.search.tables import lexical_tsvector

_FILTERS = """
  tenant_id = %(tenant)s
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(tags)s::text[] IS NULL OR tags && %(tags)s::text[])
"""

# The live table's name, and the tenant's document count and average document length (lexeme
# positions) from search.tenant_stats, which reindex keeps in step with the table.
_TENANT = """
live AS MATERIALIZED (SELECT table_name FROM search.live_index WHERE name = 'default'),
tenant AS MATERIALIZED (
  SELECT coalesce(max(s.ndoc), 0) AS n,
         coalesce(max(s.total_len)::float8 / nullif(max(s.ndoc), 0), 1.0::float8) AS avgdl
  FROM search.tenant_stats s
  WHERE s.tenant_id = %(tenant)s AND s.table_name = (SELECT table_name FROM live)
)
"""

# The query's stemmed lexemes, parsed as the index parses a field (identifiers split into
# words too: search_tables.lexical_tsvector), with their document frequency in the tenant
# (search.lexeme_stats) and, for those the tenant holds, their BM25 IDF. Each lexeme is written
# in tsquery syntax: quoted, with quotes and backslashes doubled, so whatever the parser emits
# casts safely.
_TERMS = r"""
terms AS (
  SELECT l.lexeme,
         '''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''' AS quoted,
         coalesce(s.ndoc, 0) AS ndoc,
         sum(coalesce(s.ndoc, 0)) OVER (ORDER BY coalesce(s.ndoc, 0), l.lexeme) AS cum
  FROM unnest(tsvector_to_array({query_tsv})) AS l(lexeme)
  LEFT JOIN search.lexeme_stats s ON s.table_name = (SELECT table_name FROM live)
    AND s.tenant_id = %(tenant)s AND s.lexeme = l.lexeme
),
idf AS (
  SELECT t.lexeme, ln(1 + (tn.n - t.ndoc + 0.5::float8) / (t.ndoc + 0.5::float8)) AS idf
  FROM terms t, tenant tn WHERE t.ndoc > 0
),
q AS (
  SELECT
    coalesce((SELECT array_agg(lexeme ORDER BY lexeme) FROM idf), '{}')::text[] AS known,
    coalesce((SELECT array_agg(idf ORDER BY lexeme) FROM idf), '{}')::float8[] AS idfs,
    coalesce((SELECT string_agg(quoted, ' | ') FROM terms), '__nothing__')::tsquery AS tsq,
    coalesce((SELECT string_agg(quoted, ' | ') FROM terms
              WHERE ndoc > 0 AND (cum <= %(lex_budget)s OR cum = ndoc)),
             '__nothing__')::tsquery AS cand
)
""".replace("{query_tsv}", lexical_tsvector("%(q)s"))

# Lexical candidates (CTE `lex_cand`): the documents holding the rarest lexemes the tenant
# has while their document frequencies sum to at most %(lex_budget)s (the rarest one always),
# found by the (tenant_id, tsv) GIN index; LIMIT bounds the case where even the rarest is
# common. Common lexemes still score the candidates, but do not make most of the tenant one.
_LEX_CAND = """
lex_cand AS (
  SELECT c.doc_id, c.tsv FROM q, LATERAL (
    SELECT d.doc_id, d.tsv FROM search.live_documents d
    WHERE d.tsv @@ q.cand AND {filters} LIMIT %(lex_budget)s) c
)
"""

# One document's BM25 over all of the query's lexemes (an OR: an implicit AND, as in
# websearch_to_tsquery, finds almost nothing for natural-language questions) from its tsvector
# {tsv}, as `score` (0 without any of them), with the IDF its matches hold as `matched`. Term
# frequency: the lexeme's positions, cut out of the tsvector by giving the query's lexemes
# weight D (the index gives every position A, B or C) and keeping only D; document length: its
# lexemes (length(tsv)); IDF from q's arrays. Per document, not one join and aggregate over
# all candidates: that is slower.
_BM25_DOC = """
SELECT coalesce(sum(t.idf * t.tf * (%(k1)s + 1)
                    / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * length({tsv}) / tn.avgdl))), 0)
         AS score,
       coalesce(sum(t.idf), 0) AS matched
FROM (SELECT q.idfs[array_position(q.known, u.lexeme)] AS idf, cardinality(u.positions) AS tf
      FROM q, unnest(ts_filter(setweight({tsv}, 'D', q.known), '{{d}}')) u) t, tenant tn
"""

_TS_RANK_DOC = "SELECT ts_rank_cd({tsv}, q.tsq)::float8 AS score, NULL::float8 AS matched FROM q"


def _scorer(ranker: str, tsv: str) -> str:
    """A one-row query of (score, matched) for the tsvector expression `tsv`."""
    return (_BM25_DOC if ranker == "bm25" else _TS_RANK_DOC).format(tsv=tsv)


# The best lexical matches (CTE `lex_ranked`).
_LEXICAL = """
lex_ranked AS (
  SELECT c.doc_id, s.score, s.matched FROM lex_cand c CROSS JOIN LATERAL ({scorer}) s
  ORDER BY s.score DESC, c.doc_id LIMIT %(lex_limit)s
)
"""

# Nearest neighbours (CTE `vec_ranked`). A tenant with at most %(exact_max)s documents is
# scanned exactly (`+ 0` keeps the planner off HNSW: a graph walk filtered to a small tenant
# visits mostly other tenants' rows and still misses neighbours); a larger tenant walks the
# HNSW graph with iterative scans. Only one branch runs: the other's one-time filter is false.
_VECTOR = """
vec_ranked AS (
  (SELECT doc_id, embedding <=> {qv} AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant) > %(exact_max)s
   ORDER BY embedding <=> {qv} LIMIT %(vec_limit)s)
  UNION ALL
  (SELECT doc_id, (embedding <=> {qv}) + 0 AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant) <= %(exact_max)s
   ORDER BY 2 LIMIT %(vec_limit)s)
)
"""

# Hybrid's query vector (CTE `qv`): the query's embedding plus, with feedback, %(fb)s (times
# the top lexical hit's share of the query's IDF under the "top_match" gate) times the mean
# embedding of the top %(fb_docs)s lexical hits. pgvector has no vector-by-scalar product: the
# scalar is a vector of that value (array_fill). No lexical hit, or a weight of 0: the query's.
# The vector list's HNSW walk orders by this one value (an InitPlan parameter).
_QUERY_VECTOR = """
qv AS MATERIALIZED (
  SELECT CASE WHEN g.a > 0 AND c.e IS NOT NULL
    THEN %(qvec)s + c.e * array_fill(g.a::real, ARRAY[vector_dims(%(qvec)s)])::vector
    ELSE %(qvec)s END AS v
  FROM (SELECT avg(d.embedding) AS e
        FROM (SELECT doc_id FROM lex_ranked ORDER BY score DESC, doc_id
              LIMIT %(fb_docs)s) t
        JOIN search.live_documents d ON d.doc_id = t.doc_id AND d.tenant_id = %(tenant)s) c,
       (SELECT %(fb)s * CASE %(fb_gate)s
          WHEN 'top_match' THEN coalesce(
            (SELECT matched FROM lex_ranked ORDER BY score DESC, doc_id LIMIT 1)
            / nullif((SELECT sum(idf) FROM idf), 0), 0)
          ELSE 1::float8 END AS a) g
)
"""
# Where hybrid reads its query vector.
_HYBRID_QV = "(SELECT v FROM qv)"

# Both lists ranked, the pool of their documents, and this query's lexical weight.
_POOL = """
vec AS (SELECT doc_id, dist, row_number() OVER (ORDER BY dist, doc_id) AS rnk
        FROM vec_ranked),
lex AS (SELECT doc_id, score, matched, row_number() OVER (ORDER BY score DESC, doc_id) AS rnk
        FROM lex_ranked),
pool AS (
  SELECT coalesce(vec.doc_id, lex.doc_id) AS doc_id, vec.rnk AS vector_rank,
         lex.rnk AS lexical_rank, vec.dist, lex.score AS lscore
  FROM vec FULL OUTER JOIN lex ON vec.doc_id = lex.doc_id
),
feature AS (
  SELECT CASE %(adapt)s
    WHEN 'known_terms' THEN coalesce((SELECT count(*) FILTER (WHERE ndoc > 0)::float8
                                      / nullif(count(*), 0) FROM terms), 0)
    WHEN 'query_terms' THEN (SELECT least(count(*), %(terms_cap)s)::float8 / %(terms_cap)s
                             FROM terms)
    WHEN 'top_match' THEN coalesce((SELECT matched FROM lex WHERE rnk = 1)
                                   / nullif((SELECT sum(idf) FROM idf), 0), 0)
    ELSE 0::float8 END AS f
),
w AS (SELECT %(w_vec)s::float8 AS vec, %(w_lex)s + (%(w_lex1)s - %(w_lex)s) * f AS lex
      FROM feature)
"""

_RRF = """
fused AS (
  SELECT p.doc_id, p.vector_rank, p.lexical_rank,
         coalesce(w.vec / (%(k)s + p.vector_rank), 0)
           + coalesce(w.lex / (%(k)s + p.lexical_rank), 0) AS score
  FROM pool p, w
)
"""

# Every pooled document's cosine similarity and lexical score, normalised over the pool. A
# document in one list only gets the other score computed (COALESCE evaluates the distance or
# the scorer only then, so no other document's embedding is read or tsvector scored again).
_CONVEX = """
scored AS (
  SELECT p.doc_id, p.vector_rank, p.lexical_rank,
         1 - coalesce(p.dist, d.embedding <=> {qv}) AS vs,
         coalesce(p.lscore, (SELECT f.score FROM ({scorer}) f)) AS ls
  FROM pool p JOIN search.live_documents d ON d.doc_id = p.doc_id AND d.tenant_id = %(tenant)s
),
fused AS (
  SELECT x.doc_id, x.vector_rank, x.lexical_rank,
         w.vec * {norm_vs} + w.lex * {norm_ls} AS score
  FROM scored x, w
)
"""

_NORMS = {
    "minmax": "coalesce(({x} - min({x}) OVER ())"
    " / nullif(max({x}) OVER () - min({x}) OVER (), 0), 0)",
    "zscore": "coalesce(({x} - avg({x}) OVER ()) / nullif(stddev_pop({x}) OVER (), 0), 0)",
}

_VECTOR_TEMPLATE = """
WITH {tenant}, {vector}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, 1 - v.dist AS score,
       row_number() OVER (ORDER BY v.dist, d.doc_id) AS vector_rank,
       NULL::bigint AS lexical_rank
FROM vec_ranked v JOIN search.live_documents d
  ON d.doc_id = v.doc_id AND d.tenant_id = %(tenant)s
ORDER BY vector_rank
"""

_LEXICAL_TEMPLATE = """
WITH {tenant}, {terms}, {lex_cand}, {lexical}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, l.score, NULL::bigint AS vector_rank,
       row_number() OVER (ORDER BY l.score DESC, l.doc_id) AS lexical_rank
FROM lex_ranked l JOIN search.live_documents d
  ON d.doc_id = l.doc_id AND d.tenant_id = %(tenant)s
ORDER BY lexical_rank
"""

_HYBRID_TEMPLATE = """
WITH {tenant}, {terms}, {lex_cand}, {lexical}, {query_vector}, {vector}, {pool}, {fuse}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, f.score, f.vector_rank, f.lexical_rank
FROM fused f JOIN search.live_documents d ON d.doc_id = f.doc_id AND d.tenant_id = %(tenant)s
ORDER BY f.score DESC, d.doc_id LIMIT %(limit)s
"""


def compose(template: str, ranker: str = "bm25", method: str = "rrf") -> sql.Composed:
    """Fill the fixed fragments into a statement; values stay bound parameters."""
    # Hybrid searches with its query vector `qv` (lexical feedback); other statements with the
    # query's embedding.
    qv = _HYBRID_QV if "{query_vector}" in template else "%(qvec)s"
    fuse = _RRF
    if method != "rrf":
        norm = _NORMS[method]
        fuse = _CONVEX.format(
            scorer=_scorer(ranker, "d.tsv"),
            norm_vs=norm.format(x="x.vs"),
            norm_ls=norm.format(x="x.ls"),
            qv=qv,
        )
    frags = {
        "tenant": _TENANT,
        "terms": _TERMS,
        "lex_cand": _LEX_CAND.format(filters=_FILTERS),
        "lexical": _LEXICAL.format(scorer=_scorer(ranker, "c.tsv")),
        "query_vector": _QUERY_VECTOR,
        "vector": _VECTOR.format(filters=_FILTERS, qv=qv),
        "pool": _POOL,
        "fuse": fuse,
    }
    return sql.Composed([sql.SQL(template.format(**frags))])


VECTOR_SQL = compose(_VECTOR_TEMPLATE)
_SQL: dict[tuple[str, str, str], sql.Composed] = {
    (mode, ranker, method): compose(template, ranker, method)
    for ranker in RANKERS
    for mode, template, methods in (
        ("lexical", _LEXICAL_TEMPLATE, ("rrf",)),
        ("hybrid", _HYBRID_TEMPLATE, FUSION_METHODS),
    )
    for method in methods
}


def statement(mode: str, fusion: FusionWeights) -> sql.Composed:
    """The one SQL statement that runs `mode` with `fusion`."""
    if mode == "vector":
        return VECTOR_SQL
    return _SQL[(mode, fusion.ranker, fusion.method if mode == "hybrid" else "rrf")]


@dataclass(frozen=True)
class SearchRequest:
    """One search of one tenant: what its statement, bound parameters and settings come from.

    Checked when it is made, so a bad request fails before anything is embedded or queried.
    `exact_scan_max_docs`: tenants up to this size get an exact vector scan instead of HNSW
    (0 forces HNSW for every tenant, e.g. to measure the graph's own recall).
    """

    query: str
    tenant_id: str
    types: Sequence[str] | None = None
    tags: Sequence[str] | None = None
    limit: int = 10
    mode: Mode = "hybrid"
    fusion: FusionWeights = DEFAULT_FUSION
    ef_search: int = DEFAULT_EF_SEARCH
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS

    def __post_init__(self) -> None:
        # Postgres text cannot hold NUL: say so here rather than fail in the query (a DataError).
        for label, values in (
            ("query", [self.query]),
            ("tenant_id", [self.tenant_id]),
            ("types", self.types),
            ("tags", self.tags),
        ):
            if values and any("\x00" in v for v in values):
                raise ValueError(f"{label} must not contain the NUL character (U+0000)")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.tenant_id:
            raise ValueError("tenant_id is required")
        if not self.query or not self.query.strip():
            raise ValueError("query must not be empty")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_LIMIT}, got {self.limit}")


def search_params(request: SearchRequest, query_vector: np.ndarray | None) -> dict[str, object]:
    """The bound parameters of `request`'s statement (`statement(request.mode, request.fusion)`)."""
    fusion, limit = request.fusion, request.limit
    return {
        "q": request.query,
        "qvec": None if query_vector is None else np.asarray(query_vector, dtype=np.float32),
        "tenant": request.tenant_id,
        "types": list(request.types) if request.types else None,
        "tags": list(request.tags) if request.tags else None,
        "limit": limit,
        "vec_limit": limit if request.mode == "vector" else max(fusion.candidates, limit),
        "lex_limit": limit if request.mode == "lexical" else max(fusion.candidates, limit),
        "lex_budget": max(fusion.lexical_budget, limit),
        "exact_max": request.exact_scan_max_docs,
        "w_vec": float(fusion.vector),
        "w_lex": float(fusion.lexical),
        "w_lex1": float(fusion.lexical_weight_at_1),
        "adapt": fusion.adapt,
        "terms_cap": QUERY_TERMS_CAP,
        "k": float(fusion.k),
        "k1": float(fusion.k1),
        "b": float(fusion.b),
        "fb": float(fusion.feedback),
        "fb_docs": fusion.feedback_docs,
        "fb_gate": fusion.feedback_gate,
    }


def set_search_locals(conn: psycopg.Connection, ef_search: int) -> None:
    """The transaction-local settings every search statement runs with (one round trip).

    Iterative scans keep filtered HNSW results complete. Parallel workers cost more than a
    search of a few milliseconds (Postgres starts them for the exact-scan branch even when its
    one-time filter skips it). A prepared search (psycopg prepares a statement from its fifth
    run on a connection) reuses its generic plan: planning the hybrid statement costs ~1.5 ms,
    and its plan does not depend on the values (the tenant's size is decided at run time).
    """
    conn.execute(
        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
        " set_config('max_parallel_workers_per_gather', '0', true),"
        " set_config('plan_cache_mode', 'force_generic_plan', true),"
        " set_config('hnsw.ef_search', %s, true)",
        (str(ef_search),),
    )
