"""The shipped-corpus half of benchmarks/embedding_throughput.py: documents/s, tokens/s and
GFLOP/s of fp32 and int8, retrieval quality (nDCG@10 on the labelled queries, exact search
per tenant, as the `int8_retrieval` check computes it), and with its flags the int8 operator
profile, document batch sizes, quantisation variants and the GPU."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import embedding_variants as ev
import numpy as np

from ml_assets.search.corpus import default_corpus_path, load_corpus, load_queries
from ml_assets.search.embedder_quality import exact_top_k
from ml_assets.search.index import embedding_text
from ml_assets.search.ranking import ndcg_at

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class Corpus:
    def __init__(self, tokenizer: Any) -> None:
        self.docs = load_corpus(default_corpus_path()).documents
        self.queries = load_queries()
        self.texts = [embedding_text(d) for d in self.docs]
        self.lengths = [len(e.ids) for e in tokenizer.encode_batch(self.texts)]
        self.work = ev.flops(self.lengths)
        self.by_tenant: dict[str, list[int]] = defaultdict(list)
        for i, d in enumerate(self.docs):
            self.by_tenant[d.tenant_id].append(i)

    def ndcg(self, doc_vecs: np.ndarray, query_vecs: np.ndarray) -> float:
        scores = []
        for qi, q in enumerate(self.queries):
            idx = self.by_tenant[q.tenant_id]
            ids = [self.docs[i].id for i in idx]
            top = exact_top_k(query_vecs[qi : qi + 1], doc_vecs[idx], ids)[0]
            scores.append(ndcg_at(top, q.relevant_ids))
        return float(np.mean(scores))


def _timed(embed: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = embed(texts)
    return out, time.perf_counter() - start


def _row(label: str, corpus: Corpus, seconds: float, peak: float, extra: str = "") -> str:
    n, tokens = len(corpus.texts), sum(corpus.lengths)
    gflops = corpus.work / seconds / 1e9
    return (
        f"{label:<38} {n / seconds:>7.1f} {tokens / seconds:>9.0f} {gflops:>8.1f} "
        f"{100 * gflops / peak:>6.0f}%  {extra}"
    )


def corpus_section(
    fp32: Any,
    int8: Any,
    peak: float,
    args: Any,
    embedder: Callable,
    exports: tuple[bytes, bytes],
    short: list[str],
) -> dict[str, float]:
    """`embedder(onnx_bytes, providers=[CPU])` builds an embedder; `exports`: fp32, int8;
    `short`: 32 short texts for the batch-invariance figure."""
    fp32_bytes, int8_bytes = exports
    corpus = Corpus(fp32._tokenizer)
    n, tokens = len(corpus.texts), sum(corpus.lengths)
    print(
        f"shipped corpus: {n} documents, {tokens / n:.0f} tokens avg (max_length "
        f"{fp32.max_length}), {corpus.work / n / 1e9:.2f} GFLOP each; one timed pass per path"
    )
    header = f"{'path':<38} {'docs/s':>7} {'tokens/s':>9} {'GFLOP/s':>8} {'% peak':>7}  quality"
    print(header)
    print("-" * (len(header) + 30))
    queries = [q.query for q in corpus.queries]
    out: dict[str, float] = {}
    ref_docs: np.ndarray | None = None
    for name, e in (("fp32", fp32), ("int8", int8)):
        e.embed(corpus.texts[:64])  # warm-up
        docs, seconds = _timed(e.embed, corpus.texts)
        out[f"ndcg {name}"] = corpus.ndcg(docs, e.embed(queries))
        out[f"{name} docs/s"] = n / seconds
        extra = f"nDCG@10 {out[f'ndcg {name}']:.4f}"
        if ref_docs is None:
            ref_docs = docs
        else:
            cos = np.sum(docs * ref_docs, axis=1)
            extra += f", cos to fp32 mean {cos.mean():.4f} min {cos.min():.4f}"
        print(_row(f"onnx {name} (shipped)", corpus, seconds, peak, extra), flush=True)
    if args.variants:
        for batch in (16, 32, 128):
            sized = _with_batch(int8, batch)
            _, seconds = _timed(sized.embed, corpus.texts)
            print(_row(f"int8, batches of {batch} documents", corpus, seconds, peak), flush=True)
        print(
            f"{'':<38} batch invariance (min cos alone vs in a batch of 32 short texts): "
            f"fp32 {ev.batch_invariance(fp32, short):.5f}, shipped int8 "
            f"{ev.batch_invariance(int8, short):.5f}"
        )
        builds = {
            label: (lambda o=options: ev.quantize_variant(fp32_bytes, **dict(o)))
            for label, options in ev.VARIANTS.items()
        }
        feeds = ev.calibration_feeds(fp32._tokenizer, corpus.texts[::20])
        builds["static QDQ MatMuls (min-max calibrated)"] = lambda: ev.quantize_static_qdq(
            fp32_bytes, feeds
        )
        for label, build in builds.items():
            variant = embedder(build())
            variant.embed(corpus.texts[:64])
            docs, seconds = _timed(variant.embed, corpus.texts)
            score = corpus.ndcg(docs, variant.embed(queries))
            cos = np.sum(docs * ref_docs, axis=1)
            print(
                _row(
                    f"int8 variant: {label}",
                    corpus,
                    seconds,
                    peak,
                    f"nDCG@10 {score:.4f} ({score - out['ndcg fp32']:+.4f} vs fp32), cos to "
                    f"fp32 mean {cos.mean():.4f} min {cos.min():.4f}, batch invariance "
                    f"{ev.batch_invariance(variant, short):.5f}",
                ),
                flush=True,
            )
    print()
    if args.profile:
        _print_profile(int8, int8_bytes, corpus.texts[:128])
    _gpu(embedder, exports, corpus.texts[:512])
    return out


def _with_batch(e: Any, batch: int) -> Any:
    """The same session, planning batches of at most `batch` texts."""
    import copy

    sized = copy.copy(e)
    sized.batch_size = batch
    return sized


def _print_profile(int8: Any, data: bytes, texts: list[str]) -> None:
    """ORT's per-operator profile of the shipped int8 graph over `texts` (same batching)."""

    def run(session: Any) -> None:
        profiled = _with_batch(int8, int8.batch_size)
        profiled._session = session
        profiled.embed(texts)

    print(f"int8 per-operator time (ORT profiler, {len(texts)} corpus documents, top 8):")
    for op, ms, share in ev.op_profile(data, run, threads=2)[:8]:
        print(f"  {op:<28} {ms:>9.1f} ms {100 * share:>5.1f}%")
    print()


def _gpu(embedder: Callable, exports: tuple[bytes, bytes], texts: list[str]) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if CUDA not in available:
        print(
            f"GPU: this onnxruntime has no CUDA provider ({', '.join(available)}), so no GPU "
            "figure; with onnxruntime-gpu on a CUDA machine this prints 512 documents in ms."
        )
        return
    for name, data in zip(("fp32", "int8"), exports, strict=True):
        e = embedder(data, providers=[CUDA, CPU])
        e.embed(texts[:64])
        _, seconds = _timed(e.embed, texts)
        print(f"GPU ({e.providers[0]}): {name} {len(texts)} documents in {seconds * 1000:.0f} ms")
