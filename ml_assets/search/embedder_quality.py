"""Parity of the exported embedders: fp32 vs PyTorch, int8 vs fp32, and retrieval quality."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ml_assets.search.corpus import default_corpus_path, load_corpus, load_queries
from ml_assets.search.embedder_export import tokenizer_path, torch_embed
from ml_assets.search.index import embedding_text
from ml_assets.search.ranking import ndcg_at, overlap_at
from ml_assets.search.text_embedder import OnnxTextEmbedder

HELD_DOCS = 200
# Tokens per text: all-MiniLM-L6-v2 was trained at 256 (sentence-transformers' max_seq_length).
MAX_LENGTH = 256


def exact_top_k(
    query_vecs: np.ndarray, doc_vecs: np.ndarray, doc_ids: list[str], k: int = 10
) -> list[list[str]]:
    """Exact cosine top-k (vectors are unit-norm, so the dot product is the cosine)."""
    scores = query_vecs @ doc_vecs.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[doc_ids[j] for j in row] for row in order]


def embedder_parity(fp32: bytes, int8: bytes) -> dict[str, float]:
    """Compare both exports on the shipped corpus and labelled queries (a fixed held set)."""
    docs = load_corpus(default_corpus_path()).documents
    queries = load_queries()
    tok = tokenizer_path()
    e32 = OnnxTextEmbedder(fp32, tok, max_length=MAX_LENGTH, spin_wait=False)
    e8 = OnnxTextEmbedder(int8, tok, max_length=MAX_LENGTH, spin_wait=False)

    # Every vector is embedded once: the fp32-vs-PyTorch held set is the labelled queries and
    # every len(docs)//HELD_DOCS-th document, rows of the fp32 runs the retrieval check needs.
    step = max(1, len(docs) // HELD_DOCS)
    texts = [embedding_text(d) for d in docs]
    query_texts = [q.query for q in queries]
    d32, d8 = e32.embed(texts), e8.embed(texts)
    q32, q8 = e32.embed(query_texts), e8.embed(query_texts)
    held = query_texts + texts[::step]
    ref = torch_embed(held, max_length=MAX_LENGTH)
    fp32_cos = np.sum(ref * np.concatenate([q32, d32[::step]]), axis=1)
    pair_cos = np.sum(d32 * d8, axis=1)

    by_tenant: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_tenant[d.tenant_id].append(i)
    ndcg32, ndcg8, overlap = [], [], []
    for qi, q in enumerate(queries):
        idx = by_tenant[q.tenant_id]
        ids = [docs[i].id for i in idx]
        top32 = exact_top_k(q32[qi : qi + 1], d32[idx], ids)[0]
        top8 = exact_top_k(q8[qi : qi + 1], d8[idx], ids)[0]
        ndcg32.append(ndcg_at(top32, q.relevant_ids))
        ndcg8.append(ndcg_at(top8, q.relevant_ids))
        overlap.append(overlap_at(top8, top32))
    return {
        "fp32_min_cosine": float(fp32_cos.min()),
        "fp32_mean_cosine": float(fp32_cos.mean()),
        "int8_mean_cosine": float(pair_cos.mean()),
        "int8_min_cosine": float(pair_cos.min()),
        "ndcg_fp32": float(np.mean(ndcg32)),
        "ndcg_int8": float(np.mean(ndcg8)),
        "top10_overlap": float(np.mean(overlap)),
        "held_texts": float(len(held)),
        "queries": float(len(queries)),
    }
