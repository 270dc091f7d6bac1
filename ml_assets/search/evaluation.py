"""Search quality on labelled queries: every mode and fusion by the real SQL; HNSW recall; the
scratch index that a labelled set outside the live index is searched in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from ml_assets.platform.dsn import with_database
from ml_assets.search.config import (
    DEFAULT_EF_SEARCH,
    EXACT_SCAN_MAX_DOCS,
    MODES,
    FusionWeights,
    SearchServing,
)
from ml_assets.search.corpus import (
    LabelledQuery,
    default_corpus_path,
    known_tenants,
    load_corpus,
)
from ml_assets.search.index import Embedder, IndexStats, connect, reindex
from ml_assets.search.query import run_search
from ml_assets.search.ranking import ndcg_at, recall_at, reciprocal_rank
from ml_assets.search.sql import VECTOR_SQL

K = 10
# Held while a report builds and searches a scratch index, so that no other report switches
# that database's live index to another embedder's table meanwhile.
EVAL_LOCK_KEY = 0x6D6C_6576_616C_7365 & 0x7FFF_FFFF_FFFF_FFFF


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


def served_config(fusion: FusionWeights, embedder_sha256: str) -> SearchServing:
    """The search configuration a report judges and the bundle serves: `fusion` with this
    code's scan parameters, for the embedder whose vectors the report searched."""
    return SearchServing(embedder_sha256=embedder_sha256, fusion=fusion, limit_evaluated=K)


def rank_all(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    mode: str,
    fusion: FusionWeights,
    *,
    ef_search: int = DEFAULT_EF_SEARCH,
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS,
) -> list[list[str]]:
    scan = {"ef_search": ef_search, "exact_scan_max_docs": exact_scan_max_docs}
    return [
        [
            h.doc_id
            for h in run_search(
                conn, q.query, v, q.tenant_id, limit=K, mode=mode, fusion=fusion, **scan
            )
        ]
        for q, v in zip(queries, vectors, strict=True)
    ]


def evaluate(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    serving: SearchServing,
) -> list[ModeScores]:
    """Every mode on every split of `queries`, searched exactly as `serving` says."""
    out = []
    for split in sorted({q.split for q in queries}) + ["all"]:
        idx = [i for i, q in enumerate(queries) if split == "all" or q.split == split]
        subset = [queries[i] for i in idx]
        for mode in MODES:
            ranked = rank_all(
                conn, subset, vectors[idx], mode, serving.fusion, **serving.scan_options()
            )
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


def embed_queries(embedder: Embedder, queries: Sequence[LabelledQuery]) -> np.ndarray:
    """Each query embedded on its own, as the service embeds a request.

    Not in one batch: the int8 model quantises activations per batch, so a query's vector
    depends on what it is batched with (by up to 0.04 here), and the judged ranking would not
    be the served one.
    """
    return np.stack([embedder.embed([q.query])[0] for q in queries]).astype(np.float32)


def split_scores(
    label: str, ranked: Sequence[list[str]], queries: Sequence[LabelledQuery]
) -> list[ModeScores]:
    """Recall@10, MRR and nDCG@10 of `ranked` per split and over all queries."""
    out = []
    for split in sorted({q.split for q in queries}) + ["all"]:
        idx = [i for i, q in enumerate(queries) if split == "all" or q.split == split]
        rec, mrr, ndcg = _scores([ranked[i] for i in idx], [queries[i] for i in idx])
        out.append(ModeScores(label, split, rec, mrr, ndcg, len(idx)))
    return out


def _create_database(dsn: str, database: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            pass  # another report created it first
        except psycopg.Error as exc:
            raise RuntimeError(
                f"cannot create the database {database!r} for the labelled sets' scratch "
                f"index ({exc}); create it (with the vector extension) or configure another"
            ) from exc


@contextmanager
def labelled_set_index(
    dsn: str,
    database: str,
    dataset: str,
    embedder: Embedder,
    model_sha256: str,
    log: Callable[[str], None] = lambda _msg: None,
) -> Iterator[tuple[str, IndexStats]]:
    """The packaged `dataset` corpus indexed for search, by the same index code and embedder as
    the live index, in `database` on the server of `dsn`; yields (its DSN, the reindex stats).

    Kept between runs, one table per embedder: a rerun with the same embedder and corpus embeds
    nothing. Holds an advisory lock there until the caller is done searching it.
    """
    _create_database(dsn, database)
    eval_dsn = with_database(dsn, database)
    corpus = load_corpus(default_corpus_path(dataset), known_tenants(dataset))
    with connect(eval_dsn, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (EVAL_LOCK_KEY,))
        try:
            stats = reindex(
                eval_dsn, corpus.documents, embedder, model_sha256, corpus.corpus_sha256, log=log
            )
            yield eval_dsn, stats
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (EVAL_LOCK_KEY,))


# What a labelled set is judged on besides the served configuration: ts_rank_cd, the lexical
# ranker from before BM25, side by side with the served one.
TS_RANK_CD = FusionWeights(ranker="ts_rank_cd")


@dataclass(frozen=True)
class SetJudgement:
    """A labelled set searched by the real SQL: every mode, the served fusion and others."""

    scores: list[ModeScores]
    # Label ("vector", "lexical", "lexical:ts_rank_cd", "hybrid", "hybrid:<family>") ->
    # query id -> the top 10 doc ids.
    rankings: dict[str, dict[str, list[str]]]
    # Hits from another tenant than the query's, over every search made (must be 0).
    cross_tenant_hits: int


def judge_set(
    conn: psycopg.Connection,
    queries: Sequence[LabelledQuery],
    vectors: np.ndarray,
    serving: SearchServing,
    others: dict[str, FusionWeights] | None = None,
) -> SetJudgement:
    """Score vector, lexical (served ranker and ts_rank_cd) and hybrid search as `serving` says,
    and hybrid with each of `others` (label -> fusion, the same scans), on every split of
    `queries`."""
    fusion, scan = serving.fusion, serving.scan_options()
    runs: list[tuple[str, str, FusionWeights]] = [
        ("vector", "vector", fusion),
        ("lexical", "lexical", fusion),
        ("lexical:ts_rank_cd", "lexical", TS_RANK_CD),
        ("hybrid", "hybrid", fusion),
    ]
    runs += [(f"hybrid:{label}", "hybrid", f) for label, f in (others or {}).items()]
    scores: list[ModeScores] = []
    rankings: dict[str, dict[str, list[str]]] = {}
    foreign = 0
    for label, mode, f in runs:
        ranked = []
        for q, v in zip(queries, vectors, strict=True):
            hits = run_search(conn, q.query, v, q.tenant_id, limit=K, mode=mode, fusion=f, **scan)
            foreign += sum(h.tenant_id != q.tenant_id for h in hits)
            ranked.append([h.doc_id for h in hits])
        rankings[label] = {q.id: r for q, r in zip(queries, ranked, strict=True)}
        scores.extend(split_scores(label, ranked, queries))
    return SetJudgement(scores, rankings, foreign)
