"""Search over the live index: vector, lexical and hybrid, one SQL statement per mode.

The tenant filter is a bound parameter in every statement's WHERE clause: no query can reach
another tenant's rows. Filtered vector search uses pgvector's iterative HNSW scan, so a small
tenant still gets `limit` results (pgvector issues 259/671).

Every read runs in its own transaction (`conn.transaction()`): a search never leaves its
connection idle in transaction, holding a lock on the view that a reindex must replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import psycopg
from psycopg import sql

from ml_assets.core.search_index import Embedder, connect
from ml_assets.core.search_tables import lexical_tsvector

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "lexical")
MAX_LIMIT = 100
# Lexical search ranks at most this many documents (FusionWeights.lexical_budget): those holding
# the query's rarest lexemes. The default of configurations from before BM25.
LEXICAL_CANDIDATES = 1000
# Vector search scans a tenant with at most this many documents exactly (recall 1.0).
EXACT_SCAN_MAX_DOCS = 2_000
DEFAULT_EF_SEARCH = 100
# How long a read waits for the database to come back (a restart) before it fails.
RECONNECT_S = 5.0
# SQLSTATEs of a session the server ended (pg_terminate_backend, shutdown, crash, restart).
_SESSION_ENDED = ("57P01", "57P02", "57P03", "57P04", "57P05")

# How hybrid fuses its two lists: reciprocal ranks, or a convex combination of scores
# normalised per query (min-max or z-score) over the union of both candidate lists.
FUSION_METHODS = ("rrf", "minmax", "zscore")
# How lexical search scores its candidates.
RANKERS = ("bm25", "ts_rank_cd")
# What the query-adaptive lexical weight follows, each a number in [0, 1]: "known_terms" the
# share of the query's lexemes that the tenant holds, "query_terms" the number of lexemes
# over QUERY_TERMS_CAP (at most 1), "top_match" the share of the query's IDF that the top
# lexical hit holds. "none": a fixed weight.
ADAPT_FEATURES = ("none", "known_terms", "query_terms", "top_match")
QUERY_TERMS_CAP = 10
MAX_CANDIDATES = 200
MAX_LEXICAL_BUDGET = 10_000

T = TypeVar("T")


@dataclass(frozen=True)
class FusionWeights:
    """The search configuration that a quality report judges and the service serves.

    Hybrid score = `vector` * V + w * L, where w = `lexical`, or with `adapt` set
    w = `lexical` + (`lexical_at_1` - `lexical`) * feature (the feature in [0, 1]).
    `method` "rrf": V = 1/(k + vector rank), L = 1/(k + lexical rank) (0 when not in that
    list); "minmax"/"zscore": V and L are the cosine similarity and the lexical score of each
    document in either list, normalised over those documents. Each list holds `candidates`.
    Lexical search ranks by `ranker`: BM25 (`k1`, `b`; IDF and average document length of the
    tenant) or ts_rank_cd, at most `lexical_budget` documents: those holding the query's
    rarest lexemes. Equal scores go to the smaller doc_id.

    The field defaults are the configuration from before BM25 (RRF over ts_rank_cd), so a
    stored configuration keeps its meaning; DEFAULT_FUSION is what search uses given none.
    """

    vector: float = 1.0
    lexical: float = 0.5
    k: int = 60
    candidates: int = 50
    method: str = "rrf"
    ranker: str = "ts_rank_cd"
    k1: float = 1.2
    b: float = 0.75
    adapt: str = "none"
    lexical_at_1: float = 0.0
    lexical_budget: int = LEXICAL_CANDIDATES

    def __post_init__(self) -> None:
        for name, allowed in (
            ("method", FUSION_METHODS),
            ("ranker", RANKERS),
            ("adapt", ADAPT_FEATURES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if min(self.vector, self.lexical, self.lexical_at_1) < 0:
            raise ValueError("fusion weights must be >= 0")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be within 1..{MAX_CANDIDATES}")
        if not 1 <= self.lexical_budget <= MAX_LEXICAL_BUDGET:
            raise ValueError(f"lexical_budget must be within 1..{MAX_LEXICAL_BUDGET}")
        if self.k < 0 or self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError("need k >= 0, k1 >= 0 and 0 <= b <= 1")
        if self.adapt == "top_match" and self.ranker != "bm25":
            raise ValueError("adapt 'top_match' needs the bm25 ranker")

    @property
    def lexical_weight_at_1(self) -> float:
        """The lexical weight when the feature is 1 (`lexical` when not adaptive)."""
        return self.lexical_at_1 if self.adapt != "none" else self.lexical


# What search uses when given no configuration: what search_quality_report chose on the tune
# splits of both labelled sets with the packaged int8 embedder (index layout 2: identifiers
# split into words, the title counted twice): z-scored scores over the top 100 of each list,
# the lexical weight 1.0 - 0.7 x the query's length in lexemes over QUERY_TERMS_CAP (a long
# natural-language question leans on the vector side); BM25 k1 0.9, b 0.3, over at most 500
# candidates (not tuned: the labelled sets rank the same from 300 up; at 100,000 documents 1000
# costs about 5 ms more at p95). The service passes the configuration its bundle holds.
DEFAULT_FUSION = FusionWeights(
    vector=1.0,
    lexical=1.0,
    k=60,
    candidates=100,
    method="zscore",
    ranker="bm25",
    k1=0.9,
    b=0.3,
    adapt="query_terms",
    lexical_at_1=0.3,
    lexical_budget=500,
)


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
  (SELECT doc_id, embedding <=> %(qvec)s AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant) > %(exact_max)s
   ORDER BY embedding <=> %(qvec)s LIMIT %(vec_limit)s)
  UNION ALL
  (SELECT doc_id, (embedding <=> %(qvec)s) + 0 AS dist FROM search.live_documents
   WHERE {filters} AND (SELECT n FROM tenant) <= %(exact_max)s
   ORDER BY 2 LIMIT %(vec_limit)s)
)
"""

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
         1 - coalesce(p.dist, d.embedding <=> %(qvec)s) AS vs,
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
WITH {tenant}, {terms}, {lex_cand}, {lexical}, {vector}, {pool}, {fuse}
SELECT d.doc_id, d.tenant_id, d.type, d.title, d.tags, f.score, f.vector_rank, f.lexical_rank
FROM fused f JOIN search.live_documents d ON d.doc_id = f.doc_id AND d.tenant_id = %(tenant)s
ORDER BY f.score DESC, d.doc_id LIMIT %(limit)s
"""


def compose(template: str, ranker: str = "bm25", method: str = "rrf") -> sql.Composed:
    """Fill the fixed fragments into a statement; values stay bound parameters."""
    fuse = _RRF
    if method != "rrf":
        norm = _NORMS[method]
        fuse = _CONVEX.format(
            scorer=_scorer(ranker, "d.tsv"),
            norm_vs=norm.format(x="x.vs"),
            norm_ls=norm.format(x="x.ls"),
        )
    frags = {
        "tenant": _TENANT,
        "terms": _TERMS,
        "lex_cand": _LEX_CAND.format(filters=_FILTERS),
        "lexical": _LEXICAL.format(scorer=_scorer(ranker, "c.tsv")),
        "vector": _VECTOR.format(filters=_FILTERS),
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


def search_params(
    query: str,
    query_vector: np.ndarray | None,
    tenant_id: str,
    *,
    types: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    limit: int = 10,
    mode: str = "hybrid",
    fusion: FusionWeights = DEFAULT_FUSION,
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS,
) -> dict[str, object]:
    """The bound parameters of `statement(mode, fusion)`."""
    return {
        "q": query,
        "qvec": None if query_vector is None else np.asarray(query_vector, dtype=np.float32),
        "tenant": tenant_id,
        "types": list(types) if types else None,
        "tags": list(tags) if tags else None,
        "limit": limit,
        "vec_limit": limit if mode == "vector" else max(fusion.candidates, limit),
        "lex_limit": limit if mode == "lexical" else max(fusion.candidates, limit),
        "lex_budget": max(fusion.lexical_budget, limit),
        "exact_max": exact_scan_max_docs,
        "w_vec": float(fusion.vector),
        "w_lex": float(fusion.lexical),
        "w_lex1": float(fusion.lexical_weight_at_1),
        "adapt": fusion.adapt,
        "terms_cap": QUERY_TERMS_CAP,
        "k": float(fusion.k),
        "k1": float(fusion.k1),
        "b": float(fusion.b),
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


def _validate(
    query: str,
    tenant_id: str,
    limit: int,
    mode: str,
    types: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> None:
    # Postgres text cannot hold NUL: say so here rather than fail in the query (a DataError).
    for label, values in (
        ("query", [query]),
        ("tenant_id", [tenant_id]),
        ("types", types),
        ("tags", tags),
    ):
        if values and any("\x00" in v for v in values):
            raise ValueError(f"{label} must not contain the NUL character (U+0000)")
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
    _validate(query, tenant_id, limit, mode, types, tags)
    if mode != "lexical" and query_vector is None:
        raise ValueError(f"mode {mode!r} needs the query's embedding")
    params = search_params(
        query,
        query_vector,
        tenant_id,
        types=types,
        tags=tags,
        limit=limit,
        mode=mode,
        fusion=fusion,
        exact_scan_max_docs=exact_scan_max_docs,
    )
    with conn.transaction():
        set_search_locals(conn, ef_search)
        rows = conn.execute(statement(mode, fusion), params).fetchall()
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
    with conn.transaction():
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM search.live_documents WHERE tenant_id = %s)",
            (tenant_id,),
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
    _validate(query, tenant_id, limit, mode, types, tags)
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


def connection_lost(conn: psycopg.Connection, exc: psycopg.Error) -> bool:
    """Whether `exc` means the session is gone (retry on a new one), not a failed statement."""
    if conn.closed or conn.broken or isinstance(exc, psycopg.InterfaceError):
        return True
    # libpq's own errors (socket closed, server gone) carry no SQLSTATE; class 08 is the
    # connection-exception class.
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SESSION_ENDED


def _connect_within(
    get_conn: Callable[[bool], psycopg.Connection], fresh: bool, deadline: float
) -> psycopg.Connection:
    """get_conn(fresh), retried with backoff while the server refuses connections."""
    delay = 0.05
    while True:
        try:
            return get_conn(fresh)
        except psycopg.OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            fresh = True


def retry_on_dead_connection(
    get_conn: Callable[[bool], psycopg.Connection],
    work: Callable[[psycopg.Connection], T],
    *,
    reconnect_s: float = RECONNECT_S,
) -> T:
    """work(conn) on `get_conn(False)` (a cached connection); once more on `get_conn(True)` (a
    new one) when the first turns out dead, so a database restart fails no read.

    `work` must be safe to repeat (a read). Connecting waits up to `reconnect_s` for a server
    that is restarting; a second failure, or an error that is not a lost session, is raised.
    """
    conn = _connect_within(get_conn, False, time.monotonic() + reconnect_s)
    try:
        return work(conn)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if not connection_lost(conn, exc):
            raise
    return work(_connect_within(get_conn, True, time.monotonic() + reconnect_s))
