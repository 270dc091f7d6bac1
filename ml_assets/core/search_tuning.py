"""Fusion tuning on labelled queries: each query's candidates fetched once, re-ranked in Python.

A grid over BM25's k1 and b and the fusion settings is hundreds of configurations; running
search's SQL for each over every query would take minutes. Instead one statement per query,
built from the same fragments as search, fetches the candidates of both lists with their raw
features (cosine distance, the query lexemes' term frequencies in the tsvector's order, length,
IDF), and each trial re-ranks them with the SQL's arithmetic in the SQL's order: RRF and
min-max give the same floats as the SQL, z-score agrees to rounding. The configuration chosen
here is then judged by the real SQL (search_eval), never by this re-ranking.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import psycopg

from ml_assets.core.corpus import LabelledQuery
from ml_assets.core.ranking import ndcg_at
from ml_assets.core.search_config import (
    DEFAULT_EF_SEARCH,
    EXACT_SCAN_MAX_DOCS,
    QUERY_TERMS_CAP,
    FusionWeights,
)
from ml_assets.core.search_sql import compose, search_params, set_search_locals

K = 10
# The largest candidate list any trial uses: fetched once per query.
MAX_TUNED_CANDIDATES = 100
# How many documents BM25 ranks (FusionWeights.lexical_budget): fixed, not tuned (a latency
# bound; the labelled sets are too small for it to matter, see search.DEFAULT_FUSION).
LEXICAL_BUDGET = 500
BM25_K1 = (0.6, 0.9, 1.2, 1.5, 2.0)
BM25_B = (0.3, 0.5, 0.75, 0.9)
CANDIDATES = (20, 50, 100)
RRF_K = (5, 10, 20, 60)
RRF_LEXICAL = (0.0, 0.3, 0.5, 0.7, 1.0, 1.5)
CONVEX_LEXICAL = (0.1, 0.2, 0.3, 0.45, 0.65, 1.0, 1.5)
# Weights at feature 0 and 1 for the query-adaptive variants (every ordered pair of distinct).
ADAPTIVE_LEXICAL = {
    "rrf": (0.0, 0.3, 0.5, 0.7, 1.0, 1.5),
    "minmax": (0.0, 0.15, 0.3, 0.5, 1.0, 1.5),
    "zscore": (0.0, 0.15, 0.3, 0.5, 1.0, 1.5),
}
ADAPTIVE = ("known_terms", "query_terms", "top_match")

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


def fetch_candidates(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    *,
    max_candidates: int = MAX_TUNED_CANDIDATES,
    lexical_budget: int = LEXICAL_BUDGET,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> list[Candidates]:
    """Each query's candidates for trials with up to `max_candidates` per list."""
    out = []
    fusion = FusionWeights(ranker="bm25", candidates=max_candidates, lexical_budget=lexical_budget)
    for q, v in zip(queries, vectors, strict=True):
        params = search_params(
            q.query,
            v,
            q.tenant_id,
            limit=K,
            mode="hybrid",
            fusion=fusion,
            exact_scan_max_docs=EXACT_SCAN_MAX_DOCS,
        )
        with conn.transaction():
            set_search_locals(conn, ef_search)
            n_terms, n_known, idfs, idf_sum, avgdl = conn.execute(_HEADER_SQL, params).fetchone()
            rows = conn.execute(_CANDIDATES_SQL, params).fetchall()
        out.append(
            Candidates(
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
        )
    return out


def bm25_scores(c: Candidates, k1: float, b: float) -> list[float]:
    """Each candidate's BM25, summed term by term in the tsvector's order as the SQL does."""
    scores = []
    for terms, tfs, dl in zip(c.terms, c.tfs, c.length, strict=True):
        s = 0.0
        for i, tf in zip(terms, tfs, strict=True):
            s += c.idf[i] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / c.avgdl))
        scores.append(s)
    return scores


def _matched(c: Candidates, doc: int) -> float:
    s = 0.0
    for i in c.terms[doc]:
        s += c.idf[i]
    return s


def _ordered(keys: Sequence[float], idx: np.ndarray) -> list[int]:
    """idx sorted by key ascending, ties in doc_id order (idx is in doc_id order)."""
    return [int(idx[j]) for j in np.argsort(np.asarray(keys, dtype=np.float64), kind="stable")]


@dataclass
class _Prepared:
    c: Candidates
    lexical: list[float]
    lex_order: list[int]
    vec_order: list[int]


def _prepare(c: Candidates, k1: float, b: float) -> _Prepared:
    lexical = bm25_scores(c, k1, b)
    lex_idx = np.flatnonzero(c.in_lexical)
    vec_idx = np.flatnonzero(c.in_vector)
    return _Prepared(
        c,
        lexical,
        _ordered([-lexical[i] for i in lex_idx], lex_idx),
        _ordered(c.dist[vec_idx].tolist(), vec_idx),
    )


def _feature(p: _Prepared, adapt: str, lex: list[int]) -> float:
    c = p.c
    if adapt == "known_terms":
        return c.n_known / c.n_terms if c.n_terms else 0.0
    if adapt == "query_terms":
        return min(c.n_terms, QUERY_TERMS_CAP) / QUERY_TERMS_CAP
    if adapt == "top_match":
        return _matched(c, lex[0]) / c.idf_sum if lex and c.idf_sum else 0.0
    return 0.0


def _normalised(x: np.ndarray, method: str) -> np.ndarray:
    if method == "minmax":
        span = x.max() - x.min()
        return (x - x.min()) / span if span != 0 else np.zeros_like(x)
    sd = x.std()
    return (x - x.mean()) / sd if sd != 0 else np.zeros_like(x)


def rerank(p: _Prepared, f: FusionWeights, limit: int = K) -> list[str]:
    """The hybrid top `limit` that search's SQL gives for `f` (k1, b as prepared)."""
    vec, lex = p.vec_order[: f.candidates], p.lex_order[: f.candidates]
    w_lex = f.lexical + (f.lexical_weight_at_1 - f.lexical) * _feature(p, f.adapt, lex)
    pool = sorted(set(vec) | set(lex))
    if f.method == "rrf":
        vrank = {d: r for r, d in enumerate(vec, start=1)}
        lrank = {d: r for r, d in enumerate(lex, start=1)}
        score = [
            (f.vector / (f.k + vrank[d]) if d in vrank else 0.0)
            + (w_lex / (f.k + lrank[d]) if d in lrank else 0.0)
            for d in pool
        ]
    else:
        vs = _normalised(np.array([1 - p.c.dist[d] for d in pool]), f.method)
        ls = _normalised(np.array([p.lexical[d] for d in pool]), f.method)
        score = (f.vector * vs + w_lex * ls).tolist()
    order = _ordered([-s for s in score], np.array(pool, dtype=np.int64))
    return [p.c.doc_ids[d] for d in order[:limit]]


def _lexical_top(p: _Prepared, limit: int = K) -> list[str]:
    return [p.c.doc_ids[d] for d in p.lex_order[:limit]]


def _mean_ndcg(ranked: Sequence[list[str]], cands: Sequence[Candidates]) -> float:
    return float(
        np.mean([ndcg_at(r, c.query.relevant_ids, K) for r, c in zip(ranked, cands, strict=True)])
    )


def _fixed_grid() -> list[dict]:
    """Fusion settings with a fixed lexical weight (k1/b come from the BM25 stage)."""
    rrf = [
        {"method": "rrf", "candidates": c, "k": k, "lexical": w}
        for c, k, w in itertools.product(CANDIDATES, RRF_K, RRF_LEXICAL)
    ]
    return rrf + [
        {"method": m, "candidates": c, "lexical": w}
        for m in ("minmax", "zscore")
        for c, w in itertools.product(CANDIDATES, CONVEX_LEXICAL)
    ]


def _adaptive_grid(bases: Mapping[str, FusionWeights]) -> list[dict]:
    """Query-adaptive weights for each method, on its best fixed list sizes (and k)."""
    return [
        {
            "method": method,
            "candidates": base.candidates,
            "k": base.k,
            "lexical": lo,
            "adapt": adapt,
            "lexical_at_1": hi,
        }
        for method, base in bases.items()
        for adapt in ADAPTIVE
        for lo, hi in itertools.permutations(ADAPTIVE_LEXICAL[method], 2)
    ]


def family(f: FusionWeights) -> str:
    return f.method if f.adapt == "none" else f"{f.method}+{f.adapt}"


@dataclass(frozen=True)
class Tuning:
    fusion: FusionWeights
    bm25_trials: list[dict]
    fusion_trials: list[dict]
    # The best configuration of each family (a method, or a method with an adaptive feature)
    # by the tune objective, and that objective.
    families: dict[str, FusionWeights]
    family_tune: dict[str, float]

    def method_best(self) -> dict[str, FusionWeights]:
        """The best configuration of each fusion method, with a fixed or an adaptive weight."""
        best: dict[str, str] = {}
        for name, f in self.families.items():
            if f.method not in best or self.family_tune[name] > self.family_tune[best[f.method]]:
                best[f.method] = name
        return {method: self.families[name] for method, name in best.items()}


def tune(sets: Mapping[str, Sequence[Candidates]], split: str = "tune") -> Tuning:
    """BM25's k1/b by lexical nDCG@10, then the fusion by hybrid nDCG@10, on `split` only.

    The objective is the mean over the labelled sets of each set's mean nDCG@10 (so each set
    counts alike, whatever its number of queries). Ties keep the earlier, simpler setting.
    """
    tuned = {name: [c for c in cands if c.query.split == split] for name, cands in sets.items()}
    if any(not cands for cands in tuned.values()):
        raise ValueError(f"every labelled set needs {split!r} queries to tune on")
    bm25_trials: list[dict] = []
    best_bm25: tuple[float, float, float] | None = None
    prepared: dict[tuple[float, float], dict[str, list[_Prepared]]] = {}
    for k1, b in itertools.product(BM25_K1, BM25_B):
        prep = {name: [_prepare(c, k1, b) for c in cands] for name, cands in tuned.items()}
        per_set = {n: _mean_ndcg([_lexical_top(p) for p in ps], tuned[n]) for n, ps in prep.items()}
        mean = float(np.mean(list(per_set.values())))
        bm25_trials.append({"k1": k1, "b": b, **_flat(per_set), "tune_ndcg_at_10_mean": mean})
        if best_bm25 is None or mean > best_bm25[0]:
            best_bm25 = (mean, k1, b)
            prepared = {(k1, b): prep}
    assert best_bm25 is not None
    _, k1, b = best_bm25
    prep = prepared[(k1, b)]
    budget = {c.lexical_budget for cands in sets.values() for c in cands}
    if len(budget) != 1:
        raise ValueError(f"candidates fetched with different lexical budgets: {sorted(budget)}")
    base = FusionWeights(ranker="bm25", k1=k1, b=b, lexical_budget=budget.pop())

    trials: list[tuple[float, FusionWeights, dict]] = []

    def run(settings: list[dict]) -> None:
        for s in settings:
            f = replace(base, **s)
            per_set = {
                n: _mean_ndcg([rerank(p, f) for p in ps], tuned[n]) for n, ps in prep.items()
            }
            mean = float(np.mean(list(per_set.values())))
            row = {**_settings(f), **_flat(per_set), "tune_ndcg_at_10_mean": mean}
            trials.append((mean, f, row))

    def best(pred: Callable[[FusionWeights], bool]) -> FusionWeights:
        # max() keeps the first of equal scores: the earlier, simpler setting.
        return max((t for t in trials if pred(t[1])), key=lambda t: t[0])[1]

    run(_fixed_grid())
    bases = {"rrf": best(lambda f: f.method == "rrf" and f.lexical > 0)}
    bases |= {m: best(lambda f, m=m: f.method == m) for m in ("minmax", "zscore")}
    run(_adaptive_grid(bases))
    families: dict[str, tuple[float, FusionWeights]] = {}
    for mean, f, _ in trials:
        if family(f) not in families or mean > families[family(f)][0]:
            families[family(f)] = (mean, f)
    return Tuning(
        fusion=best(lambda f: True),
        bm25_trials=bm25_trials,
        fusion_trials=[row for _, _, row in trials],
        families={name: f for name, (_, f) in families.items()},
        family_tune={name: mean for name, (mean, _) in families.items()},
    )


def rerank_all(cands: Sequence[Candidates], fusion: FusionWeights) -> list[list[str]]:
    """Python's hybrid top 10 for each query (to compare with the SQL's)."""
    return [rerank(_prepare(c, fusion.k1, fusion.b), fusion) for c in cands]


def family_rows(tuning: Tuning, sets: Mapping[str, Sequence[Candidates]]) -> list[dict]:
    """Each family's best setting with its nDCG@10 per set and split, by this re-ranking."""
    rows = []
    for name, f in tuning.families.items():
        shown = ["candidates", "lexical"] + (["k"] if f.method == "rrf" else [])
        shown += ["lexical_at_1"] if f.adapt != "none" else []
        row: dict = {
            "family": name,
            "chosen": f == tuning.fusion,
            "settings": ", ".join(f"{k}={getattr(f, k)}" for k in shown),
        }
        for set_name, cands in sets.items():
            ranked = rerank_all(cands, f)
            for split in ("tune", "eval"):
                picked = [
                    (r, c) for r, c in zip(ranked, cands, strict=True) if c.query.split == split
                ]
                row[f"{set_name}_{split}"] = _mean_ndcg(
                    [r for r, _ in picked], [c for _, c in picked]
                )
        rows.append(row)
    return rows


def _flat(per_set: Mapping[str, float]) -> dict[str, float]:
    return {f"tune_ndcg_at_10_{name}": v for name, v in per_set.items()}


def _settings(f: FusionWeights) -> dict:
    d = asdict(f)
    return {k: d[k] for k in ("method", "adapt", "candidates", "k", "lexical", "lexical_at_1")}
