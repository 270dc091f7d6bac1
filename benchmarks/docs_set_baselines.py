"""How hard is the docs labelled set? nDCG@10 of plain vector, plain BM25 and RRF, no database.

A sanity check of ml_assets/data/docs_*.jsonl (Python docstring passages), not the served search:
vectors come from the packaged MiniLM exported to ONNX (int8 by default, as the bundle serves),
cosine top-10 in numpy within the query's tenant; BM25 (k1=1.2, b=0.75) runs in Python over
lower-cased word tokens with English stop words dropped and no stemming; RRF fuses the two top-100
lists with k=60. Documents are embedded as the index does (`embedding_text`: title + text).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/docs_set_baselines.py [--variant fp32]
        [--onnx PATH] [--dataset docs]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ml_assets.search.corpus import (  # noqa: E402
    Document,
    LabelledQuery,
    default_corpus_path,
    load_corpus,
    load_queries,
)
from ml_assets.search.index import embedding_text  # noqa: E402
from ml_assets.search.ranking import ndcg_at, recall_at  # noqa: E402

K = 10
STOP = frozenset(
    "a an and are as at be by can do does for from how i if in into is it its my of on or so "
    "that the this to was what when where which with without you your me".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in STOP]


class BM25:
    def __init__(self, docs: Sequence[Document], k1: float = 1.2, b: float = 0.75) -> None:
        self.ids = [d.id for d in docs]
        self.tfs = [Counter(tokens(f"{d.title} {d.text}")) for d in docs]
        self.lens = np.array([sum(tf.values()) for tf in self.tfs], dtype=np.float64)
        self.avg = float(self.lens.mean())
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    def rank(self, query: str, limit: int) -> list[str]:
        terms = [t for t in dict.fromkeys(tokens(query)) if t in self.idf]
        scores = np.zeros(len(self.ids))
        norm = self.k1 * (1 - self.b + self.b * self.lens / self.avg)
        for t in terms:
            tf = np.array([d.get(t, 0) for d in self.tfs], dtype=np.float64)
            scores += self.idf[t] * tf * (self.k1 + 1) / (tf + norm)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [self.ids[i] for i in order if scores[i] > 0]


def rrf(lists: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    score: dict[str, float] = defaultdict(float)
    for ranked in lists:
        for r, doc in enumerate(ranked, start=1):
            score[doc] += 1.0 / (k + r)
    return sorted(score, key=lambda d: (-score[d], d))


def embedder(variant: str, onnx_path: str | None):
    from ml_assets.search.embedder_export import export_fp32, quantize_int8, tokenizer_path
    from ml_assets.search.text_embedder import OnnxTextEmbedder

    if onnx_path:
        data = Path(onnx_path).read_bytes()
    else:
        data = export_fp32()
        data = quantize_int8(data) if variant == "int8" else data
    return OnnxTextEmbedder(data, tokenizer_path(), max_length=256)


def report(name: str, ranked: dict[str, list[str]], queries: Sequence[LabelledQuery]) -> None:
    for split in ("tune", "eval", "all"):
        qs = [q for q in queries if split == "all" or q.split == split]
        ndcg = np.mean([ndcg_at(ranked[q.id], q.relevant_ids, K) for q in qs])
        rec = np.mean([recall_at(ranked[q.id], q.relevant_ids, K) for q in qs])
        print(f"  {name:<7} {split:<5} n={len(qs):<4} nDCG@10 {ndcg:.3f}  recall@10 {rec:.3f}")
    by_tenant = defaultdict(list)
    for q in queries:
        by_tenant[q.tenant_id].append(ndcg_at(ranked[q.id], q.relevant_ids, K))
    per_tenant = ", ".join(f"{t} {np.mean(v):.3f}" for t, v in by_tenant.items())
    print(f"          per tenant: {per_tenant}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="docs")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--onnx", help="an exported embedder .onnx to use instead of exporting")
    args = parser.parse_args(argv)

    docs = load_corpus(default_corpus_path(args.dataset)).documents
    queries = load_queries(dataset=args.dataset)
    by_tenant: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        by_tenant[d.tenant_id].append(d)

    t0 = time.perf_counter()
    emb = embedder(args.variant, args.onnx)
    t1 = time.perf_counter()
    doc_vecs = emb.embed([embedding_text(d) for d in docs])
    truncated = emb.last_truncated
    query_vecs = emb.embed([q.query for q in queries])
    t2 = time.perf_counter()
    print(
        f"{len(docs)} documents, {len(queries)} queries; embedder ready in {t1 - t0:.1f} s, "
        f"embedded in {t2 - t1:.1f} s ({truncated} documents truncated at 256 tokens)"
    )
    row = {d.id: i for i, d in enumerate(docs)}
    bm25 = {t: BM25(ds) for t, ds in by_tenant.items()}
    vector: dict[str, list[str]] = {}
    lexical: dict[str, list[str]] = {}
    fused: dict[str, list[str]] = {}
    for q, qv in zip(queries, query_vecs, strict=True):
        ids = [d.id for d in by_tenant[q.tenant_id]]
        sims = doc_vecs[[row[i] for i in ids]] @ qv
        order = np.argsort(-sims, kind="stable")[:100]
        vector[q.id] = [ids[i] for i in order]
        lexical[q.id] = bm25[q.tenant_id].rank(q.query, 100)
        fused[q.id] = rrf([vector[q.id], lexical[q.id]])
    print(f"dataset {args.dataset!r}, embedder {args.onnx or args.variant}:")
    report("vector", vector, queries)
    report("bm25", lexical, queries)
    report("rrf", fused, queries)


if __name__ == "__main__":
    main()
