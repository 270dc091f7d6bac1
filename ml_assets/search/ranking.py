"""Ranking metrics for labelled queries (binary relevance)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def recall_at(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    if not relevant:
        raise ValueError("a labelled query needs at least one relevant document")
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    for i, doc in enumerate(ranked, start=1):
        if doc in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    if not relevant:
        raise ValueError("a labelled query needs at least one relevant document")
    dcg = sum(1.0 / math.log2(i + 1) for i, d in enumerate(ranked[:k], start=1) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def overlap_at(a: Sequence[str], b: Sequence[str], k: int = 10) -> float:
    """Share of the top-k of `a` that is also in the top-k of `b`."""
    top = a[:k]
    return len(set(top) & set(b[:k])) / max(len(top), 1)
