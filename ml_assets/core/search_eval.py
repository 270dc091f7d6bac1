"""Search quality on labelled queries: lexical, vector and hybrid; fusion tuning; HNSW recall."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import psycopg

from ml_assets.core.corpus import LabelledQuery
from ml_assets.core.ranking import ndcg_at, recall_at, reciprocal_rank
from ml_assets.core.search import (
    DEFAULT_EF_SEARCH,
    EXACT_SCAN_MAX_DOCS,
    MODES,
    VECTOR_SQL,
    FusionWeights,
    run_search,
)

K = 10
LEXICAL_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class ModeScores:
    mode: str
    split: str
    recall_at_10: float
    mrr: float
    ndcg_at_10: float
    queries: int


def _scores(ranked: list[list[str]], queries: Sequence[LabelledQuery]) -> tuple[float, ...]:
    rec = [recall_at(r, q.relevant_ids, K) for r, q in zip(ranked, queries, strict=True)]
    mrr = [reciprocal_rank(r, q.relevant_ids) for r, q in zip(ranked, queries, strict=True)]
    ndcg = [ndcg_at(r, q.relevant_ids, K) for r, q in zip(ranked, queries, strict=True)]
    return float(np.mean(rec)), float(np.mean(mrr)), float(np.mean(ndcg))


def served_config(fusion: FusionWeights) -> dict:
    """The search configuration a report judges and the bundle serves, as plain JSON."""
    return {
        "fusion": asdict(fusion),
        "ef_search": DEFAULT_EF_SEARCH,
        "exact_scan_max_docs": EXACT_SCAN_MAX_DOCS,
        "limit_evaluated": K,
    }


def rank_all(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    mode: str,
    fusion: FusionWeights,
) -> list[list[str]]:
    return [
        [
            h.doc_id
            for h in run_search(conn, q.query, v, q.tenant_id, limit=K, mode=mode, fusion=fusion)
        ]
        for q, v in zip(queries, vectors, strict=True)
    ]


def tune_fusion(
    conn: psycopg.Connection, queries: Sequence[LabelledQuery], vectors: np.ndarray
) -> tuple[FusionWeights, list[dict[str, float]]]:
    """Pick the lexical weight with the best nDCG@10 on the tuning queries only."""
    trials = []
    for w in LEXICAL_WEIGHTS:
        fusion = FusionWeights(vector=1.0, lexical=w)
        ndcg = _scores(rank_all(conn, queries, vectors, "hybrid", fusion), queries)[2]
        trials.append({"lexical_weight": w, "tune_ndcg_at_10": ndcg})
    best = max(trials, key=lambda t: (t["tune_ndcg_at_10"], -t["lexical_weight"]))
    return FusionWeights(vector=1.0, lexical=best["lexical_weight"]), trials


def evaluate(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    fusion: FusionWeights,
) -> list[ModeScores]:
    out = []
    for split in sorted({q.split for q in queries}) + ["all"]:
        idx = [i for i, q in enumerate(queries) if split == "all" or q.split == split]
        subset = [queries[i] for i in idx]
        for mode in MODES:
            ranked = rank_all(conn, subset, vectors[idx], mode, fusion)
            rec, mrr, ndcg = _scores(ranked, subset)
            out.append(ModeScores(mode, split, rec, mrr, ndcg, len(subset)))
    return out


def hnsw_recall(
    conn: psycopg.Connection,
    tenants_and_vectors: Sequence[tuple[str, np.ndarray]],
    *,
    ef_search: int = DEFAULT_EF_SEARCH,
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS,
) -> float:
    """Recall@10 of vector search against exact search (index scans off) for the same filter.

    With the default `exact_scan_max_docs`, small tenants are searched exactly (recall 1.0 by
    construction); pass 0 to measure the filtered HNSW walk itself for every tenant.
    """
    recalls = []
    for tenant, vec in tenants_and_vectors:
        approx = [
            h.doc_id
            for h in run_search(
                conn,
                "q",
                vec,
                tenant,
                limit=K,
                mode="vector",
                ef_search=ef_search,
                exact_scan_max_docs=exact_scan_max_docs,
            )
        ]
        with conn.transaction():
            # No index scan at all: a sequential scan with the same filter, sorted exactly.
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute(
                VECTOR_SQL,
                {
                    "qvec": np.asarray(vec, dtype=np.float32),
                    "tenant": tenant,
                    "types": None,
                    "tags": None,
                    "vec_limit": K,
                    "exact_max": 0,
                },
            ).fetchall()
        exact = [r[0] for r in rows]
        if exact:
            recalls.append(len(set(approx) & set(exact)) / len(exact))
    return float(np.mean(recalls)) if recalls else 0.0
