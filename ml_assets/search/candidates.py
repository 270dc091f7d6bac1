"""Labelled queries' candidates for fusion tuning: each query's documents of both lists with
their raw features (cosine distance, the query lexemes' term frequencies in the tsvector's
order, length, IDF), fetched once by statements built from search's own fragments, and the
cosine similarities that lexical feedback trials need."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import psycopg

from ml_assets.search.config import DEFAULT_EF_SEARCH, EXACT_SCAN_MAX_DOCS, FusionWeights
from ml_assets.search.corpus import LabelledQuery
from ml_assets.search.sql import SearchRequest, compose, search_params, set_search_locals

K = 10
# The largest candidate list any trial uses: fetched once per query.
MAX_TUNED_CANDIDATES = 100
# Nearest neighbours fetched beyond that: a feedback trial's vector list is the nearest of the
# fetched documents to its query vector (exact when they hold the tenant's whole neighbourhood
# of that vector; the chosen configuration is judged by the real SQL either way).
FEEDBACK_POOL = 300
# How many documents BM25 ranks (FusionWeights.lexical_budget): fixed, not tuned (a latency
# bound; the labelled sets are too small for it to matter, see search_config.DEFAULT_FUSION).
LEXICAL_BUDGET = 500
# The BM25 settings tune tries, and the most feedback documents a trial uses: each setting's
# top FEEDBACK_TOP lexical hits are the documents whose similarity to every candidate is fetched.
BM25_K1 = (0.6, 0.9, 1.2, 1.5, 2.0)
BM25_B = (0.3, 0.5, 0.75, 0.9)
FEEDBACK_TOP = 5

_HEADER_SQL = compose("""
WITH {tenant}, {terms}
SELECT (SELECT count(*) FROM terms), (SELECT count(*) FROM idf), q.idfs,
       (SELECT sum(idf) FROM idf), tn.avgdl
FROM q, tenant tn
""")

# Every document of either list (the lexical candidates, the nearest neighbours), in the
# database's doc_id order, with what both lists and the fusion compute from.
_CANDIDATES_SQL = compose("""
WITH {tenant}, {terms}, {lex_cand}, {vector},
flags AS (
  SELECT doc_id, bool_or(lex) AS lex, bool_or(NOT lex) AS vec
  FROM (SELECT doc_id, true AS lex FROM lex_cand
        UNION ALL SELECT doc_id, false FROM vec_ranked) p
  GROUP BY doc_id
)
SELECT f.doc_id, f.lex, f.vec, d.embedding <=> %(qvec)s, length(d.tsv), x.idx, x.tf
FROM flags f JOIN search.live_documents d ON d.doc_id = f.doc_id AND d.tenant_id = %(tenant)s
CROSS JOIN q
CROSS JOIN LATERAL (
  SELECT coalesce(array_agg(array_position(q.known, u.lexeme) ORDER BY u.ord), '{{}}') AS idx,
         coalesce(array_agg(cardinality(u.positions) ORDER BY u.ord), '{{}}') AS tf
  FROM unnest(ts_filter(setweight(d.tsv, 'D', q.known), '{{d}}'))
       WITH ORDINALITY AS u(lexeme, positions, weights, ord)) x
ORDER BY f.doc_id
""")


@dataclass(frozen=True)
class Candidates:
    """One labelled query's candidate documents, in the database's doc_id order."""

    query: LabelledQuery
    lexical_budget: int
    n_terms: int
    n_known: int
    idf: tuple[float, ...]
    idf_sum: float | None
    avgdl: float
    doc_ids: tuple[str, ...]
    in_lexical: np.ndarray
    in_vector: np.ndarray
    dist: np.ndarray
    length: tuple[int, ...]
    # Per document: the indices (into idf) of the query lexemes it holds, in the order the
    # tsvector stores them, and their term frequencies.
    terms: tuple[tuple[int, ...], ...]
    tfs: tuple[tuple[int, ...], ...]
    # For lexical feedback: the documents (indices into doc_ids) that are a top lexical hit under
    # some tried BM25 setting, and each document's cosine similarity to each of them.
    feedback_ids: tuple[int, ...] = ()
    similarity: np.ndarray | None = None


def fetch_candidates(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    *,
    max_candidates: int = MAX_TUNED_CANDIDATES,
    lexical_budget: int = LEXICAL_BUDGET,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[Candidates]:
    """Each query's candidates for trials with up to `max_candidates` per list (and the
    FEEDBACK_POOL nearest neighbours for feedback trials)."""
    out = []
    fusion = FusionWeights(ranker="bm25", candidates=max_candidates, lexical_budget=lexical_budget)
    for q, v in zip(queries, vectors, strict=True):
        request = SearchRequest(
            q.query,
            q.tenant_id,
            limit=K,
            mode="hybrid",
            fusion=fusion,
            exact_scan_max_docs=EXACT_SCAN_MAX_DOCS,
        )
        params = search_params(request, v)
        with conn.transaction():
            set_search_locals(conn, ef_search)
            n_terms, n_known, idfs, idf_sum, avgdl = conn.execute(_HEADER_SQL, params).fetchone()
            rows = conn.execute(
                _CANDIDATES_SQL, {**params, "vec_limit": max(FEEDBACK_POOL, max_candidates)}
            ).fetchall()
        c = Candidates(
            query=q,
            lexical_budget=lexical_budget,
            n_terms=int(n_terms),
            n_known=int(n_known),
            idf=tuple(float(x) for x in idfs),
            idf_sum=None if idf_sum is None else float(idf_sum),
            avgdl=float(avgdl),
            doc_ids=tuple(r[0] for r in rows),
            in_lexical=np.array([bool(r[1]) for r in rows], dtype=bool),
            in_vector=np.array([bool(r[2]) for r in rows], dtype=bool),
            dist=np.array([float(r[3]) for r in rows], dtype=np.float64),
            length=tuple(int(r[4]) for r in rows),
            terms=tuple(tuple(i - 1 for i in r[5]) for r in rows),
            tfs=tuple(tuple(r[6]) for r in rows),
        )
        out.append(_with_similarity(conn, c))
    return out


# Each candidate's cosine similarity to each of the documents %(top)s, in that order.
_SIMILARITY_SQL = """
SELECT d.doc_id, array_agg(1 - (d.embedding <=> t.embedding) ORDER BY k.ord)
FROM search.live_documents d
CROSS JOIN unnest(%(top)s::text[]) WITH ORDINALITY AS k(doc_id, ord)
JOIN search.live_documents t ON t.doc_id = k.doc_id AND t.tenant_id = %(tenant)s
WHERE d.tenant_id = %(tenant)s AND d.doc_id = ANY(%(ids)s)
GROUP BY d.doc_id
"""


def lexical_order(c: Candidates, scores: Sequence[float]) -> list[int]:
    """The lexical candidates by score, best first, ties in doc_id order (as the SQL ranks)."""
    idx = np.flatnonzero(c.in_lexical)
    keys = np.asarray([-scores[i] for i in idx], dtype=np.float64)
    return [int(idx[j]) for j in np.argsort(keys, kind="stable")]


def _with_similarity(conn: psycopg.Connection, c: Candidates) -> Candidates:
    """`c` with the similarities to its top FEEDBACK_TOP lexical hits under each BM25
    setting that tune tries."""
    top = sorted(
        {
            d
            for k1, b in itertools.product(BM25_K1, BM25_B)
            for d in lexical_order(c, bm25_scores(c, k1, b))[:FEEDBACK_TOP]
        }
    )
    if not top:
        return c
    with conn.transaction():
        rows = conn.execute(
            _SIMILARITY_SQL,
            {
                "top": [c.doc_ids[i] for i in top],
                "ids": list(c.doc_ids),
                "tenant": c.query.tenant_id,
            },
        ).fetchall()
    by_id = {r[0]: r[1] for r in rows}
    sim = np.array([by_id[d] for d in c.doc_ids], dtype=np.float64)
    return replace(c, feedback_ids=tuple(top), similarity=sim)


def bm25_scores(c: Candidates, k1: float, b: float) -> list[float]:
    """Each candidate's BM25, summed term by term in the tsvector's order as the SQL does."""
    scores = []
    for terms, tfs, dl in zip(c.terms, c.tfs, c.length, strict=True):
        s = 0.0
        for i, tf in zip(terms, tfs, strict=True):
            s += c.idf[i] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / c.avgdl))
        scores.append(s)
    return scores
