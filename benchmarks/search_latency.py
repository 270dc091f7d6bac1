"""Search at scale: latency per mode, HNSW recall vs exact, and incremental vs full reindex.

One process, one run, on the embedded PostgreSQL 18 + pgvector:
- reindex cost with the real int8 embedder on --reindex-docs documents: a full build (embed,
  COPY, then HNSW + GIN, then ANALYZE), then an incremental reindex after 1% changed;
- the shipped corpus expanded synthetically to --docs documents (sentences recombined across
  two documents of the same tenant and type; one tenant holds 5%). Embedding 100,000 texts
  takes this 2-core CPU tens of minutes, so each synthetic document's vector is the normalised
  mix of real embeddings plus noise (--proxy, PROXIES): the SQL, HNSW and recall figures are
  measured at full scale, the embedding cost by benchmarks/embedding_throughput.py;
- p50/p95 of vector, lexical (BM25) and hybrid SQL per query with the served search
  configuration (SearchServing's defaults, or --fusion: a report's search_config or a fusion
  JSON; --ef-search and --exact-scan-max-docs override its scan parameters), and end
  to end including the query's embedding (the real int8 ONNX embedder; in process, without
  the HTTP service), over the labelled queries repeated after one untimed pass; HNSW recall@10
  against exact search per tenant, as search runs it and for the filtered graph walk alone;
  with --baseline, hybrid with that configuration too, timed in turn with ours, and the ratios;
- at scale, how often each mode still ranks a labelled relevant document (or a synthetic one
  built from it) in the top 10: the labelled quality eval covers the shipped corpus only.
The load average (before and after), the CPU and the Postgres settings are printed: the
machine has 2 cores and may be shared.

    .venv/bin/python benchmarks/search_latency.py [--docs 100000] [--repeat 5]
        [--reindex-docs 5000 (0 skips the reindex cost)] [--fusion report.json]
        [--baseline other.json (its hybrid timed in turn)] [--pgdata DIR] [--proxy random]
        [--ef-search N] [--exact-scan-max-docs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ml_assets.local.stack import ensure_databases, start_embedded_postgres
from ml_assets.platform.dsn import with_database
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.search.config import (
    MODES,
    SEARCH_SERVING_SCHEMA,
    FusionWeights,
    SearchServing,
)
from ml_assets.search.corpus import Document, default_corpus_path, load_corpus, load_queries
from ml_assets.search.embedder_export import export_fp32, quantize_int8, tokenizer_path
from ml_assets.search.embedder_quality import MAX_LENGTH
from ml_assets.search.evaluation import hnsw_recall
from ml_assets.search.index import connect, embedding_text, reindex
from ml_assets.search.query import run_search
from ml_assets.search.text_embedder import OnnxTextEmbedder


def expand(
    docs: tuple[Document, ...], n: int, seed: int = 7, sources: dict[str, str] | None = None
) -> list[Document]:
    """`docs` and synthetic ones up to `n`; `sources` gets each synthetic id's second source."""
    rng = random.Random(seed)
    tenants = sorted({d.tenant_id for d in docs})
    small = min(tenants, key=lambda t: sum(d.tenant_id == t for d in docs))
    pools: dict[tuple[str, str], list[Document]] = {}
    for d in docs:
        pools.setdefault((d.tenant_id, d.type), []).append(d)
    out = list(docs)
    while len(out) < n:
        i = len(out)
        tenant = small if rng.random() < 0.05 else rng.choice([t for t in tenants if t != small])
        kind = rng.choice(sorted({k for t, k in pools if t == tenant}))
        a, b = rng.sample(pools[(tenant, kind)] * 2, 2)
        sentences = [s for s in (a.text + " " + b.text).split(". ") if s]
        rng.shuffle(sentences)
        text = ". ".join(sentences[: max(3, len(sentences) // 2)])
        out.append(
            replace(a, id=f"{a.id}-x{i}", title=f"{a.title} ({b.title.split(' ')[0]})", text=text)
        )
        if sources is not None:
            sources[out[-1].id] = b.id
    return out


# How proxy vectors are made (--proxy), and each kind's "model version" (its index table):
# "random": every document's vector is its first source's real embedding + 0.6 x a random
# shipped document's + noise (the figures published so far); "sources": the shipped documents
# keep their real embeddings, a synthetic one gets the normalised mean of its two sources' (the
# documents its sentences come from) + noise, so a document's words and vector agree (what
# lexical feedback relies on), and pairs of near-duplicates are common (harder for HNSW).
PROXIES = {
    "random": "f" * 64,
    "sources": hashlib.sha256(b"search_latency proxy vectors: sources").hexdigest(),
}


class ProxyEmbedder:
    """Real embeddings for the shipped documents, mixed into proxies for the synthetic ones."""

    def __init__(
        self,
        embedder: OnnxTextEmbedder,
        base: tuple[Document, ...],
        docs: list[Document],
        sources: dict[str, str],
        kind: str,
    ) -> None:
        self.dim = embedder.dim
        self._args = embedder, base, docs, sources, kind
        self._vectors: dict[str, np.ndarray] = {}

    def _build(self) -> None:
        # On first use only: a rerun on a kept index (--pgdata) embeds nothing.
        embedder, base, docs, sources, kind = self._args
        real = embedder.embed([embedding_text(d) for d in base])
        by_id = {d.id: real[i] for i, d in enumerate(base)}
        rng = np.random.default_rng(3)
        for d in docs:
            first = by_id[d.id.split("-x")[0]]
            if kind == "random":
                partner = base[int(rng.integers(len(base)))]
                mix = first + 0.6 * by_id[partner.id] + rng.normal(0, 0.02, self.dim)
            elif d.id in by_id:
                mix = first
            else:
                mix = first + by_id[sources[d.id]]
                mix = mix / np.linalg.norm(mix) + rng.normal(0, 0.02, self.dim)
            self._vectors[embedding_text(d)] = (mix / np.linalg.norm(mix)).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self._vectors:
            self._build()
        return np.stack([self._vectors[t] for t in texts])


def backend_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a Postgres backend has used: unlike wall time, not inflated
    by other processes on a loaded machine (10 ms ticks: meaningful summed over many queries)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float]) -> str:
    return f"p50 {np.percentile(samples, 50):6.2f} ms  p95 {np.percentile(samples, 95):6.2f} ms"


def opts(serving: SearchServing) -> dict:
    """run_search's keyword arguments for `serving`: the fusion and both scan parameters."""
    return {"fusion": serving.fusion, **serving.scan_options()}


def fmt_load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def hit_at_10(ids: list[str], relevant: tuple[str, ...]) -> bool:
    """A labelled relevant document, or a synthetic one expanded from it, is in the top 10."""
    return any(d in relevant or d.split("-x")[0] in relevant for d in ids)


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} CPUs, {' '.join(simd)}"


BASELINE = "baseline"
PG_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "maintenance_work_mem",
    "max_parallel_workers_per_gather",
)


def load_serving(
    path: str | None, embedder_sha256: str, ef_search: int | None, exact_max: int | None
) -> SearchServing:
    """What the service would apply: the defaults, or a search_quality_report's search_config
    (or a bare fusion JSON) read as SearchServing; --ef-search / --exact-scan-max-docs override."""
    serving = SearchServing(embedder_sha256)
    if path is not None:
        data = json.loads(Path(path).read_text())
        data = data.get("search_config", data)
        if "fusion" in data:
            serving = SearchServing.from_json(
                {**data, "embedder_sha256": embedder_sha256, "schema": SEARCH_SERVING_SCHEMA}
            )
        else:
            serving = replace(serving, fusion=FusionWeights(**data))
    if ef_search is not None:
        serving = replace(serving, ef_search=ef_search)
    if exact_max is not None:
        serving = replace(serving, exact_scan_max_docs=exact_max)
    return serving


def describe(serving: SearchServing) -> str:
    return (
        f"{asdict(serving.fusion)}; ef_search {serving.ef_search}; exact vector scan for "
        f"tenants <= {serving.exact_scan_max_docs:,} docs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--reindex-docs", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fusion", help="a search_quality_report JSON (or its search_config)")
    parser.add_argument(
        "--proxy",
        choices=sorted(PROXIES),
        default="random",
        help="how synthetic documents' vectors are made (see PROXIES)",
    )
    parser.add_argument(
        "--baseline",
        help="another configuration's JSON (as --fusion): its hybrid is timed in turn with ours",
    )
    parser.add_argument(
        "--ef-search", type=int, help="hnsw.ef_search of our configuration (not the baseline's)"
    )
    parser.add_argument(
        "--exact-scan-max-docs",
        type=int,
        help="tenants up to this size are scanned exactly, in our configuration",
    )
    parser.add_argument(
        "--pgdata",
        help="embedded Postgres data dir to keep (default: a temporary one); a rerun on it "
        "reuses the 100,000-document index and only times the searches",
    )
    args = parser.parse_args()
    if args.pgdata and args.reindex_docs:
        # A kept index would make the "full build" an incremental one.
        parser.error("--pgdata measures searches on a kept index: pass --reindex-docs 0 with it")
    int8 = quantize_int8(export_fp32())
    model_sha = sha256_bytes(int8)
    ours = load_serving(args.fusion, model_sha, args.ef_search, args.exact_scan_max_docs)
    baseline = load_serving(args.baseline, model_sha, None, None) if args.baseline else None
    print(f"load average at start (1/5/15 min): {fmt_load()}", flush=True)
    print(f"cpu: {cpu()}")
    print(f"search configuration: {describe(ours)}", flush=True)
    if baseline:
        print(f"{BASELINE} configuration: {describe(baseline)}", flush=True)

    base = load_corpus(default_corpus_path()).documents
    queries = load_queries()
    embedder = OnnxTextEmbedder(int8, tokenizer_path(), max_length=MAX_LENGTH)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.pgdata) if args.pgdata else Path(tmp)
        server = start_embedded_postgres(root / "pg", stop_on_exit=True)
        ensure_databases(server)
        reindex_dsn = with_database(server, "ml_assets")

        if args.reindex_docs:
            small = expand(base, args.reindex_docs)
            t = time.perf_counter()
            full = reindex(reindex_dsn, small, embedder, model_sha, "bench")
            full_s = time.perf_counter() - t
            rng = random.Random(1)
            changed = list(small)
            for i in rng.sample(range(len(small)), len(small) // 100):
                changed[i] = replace(small[i], text=small[i].text + " Revised.")
            t = time.perf_counter()
            inc = reindex(reindex_dsn, changed, embedder, model_sha, "bench-2")
            inc_s = time.perf_counter() - t

        sources: dict[str, str] = {}
        docs = expand(base, args.docs, sources=sources)
        proxy = ProxyEmbedder(embedder, base, docs, sources, args.proxy)
        ensure_databases(server, ("ml_assets_scale",))
        dsn = with_database(server, "ml_assets_scale")
        t = time.perf_counter()
        scale = reindex(
            dsn,
            docs,
            proxy,
            PROXIES[args.proxy],
            "bench-scale",
            log=lambda m: print(f"  {m}", flush=True),
        )
        scale_s = time.perf_counter() - t

        qtexts = [q.query for q in queries]
        qvecs = embedder.embed(qtexts)
        # (label, mode, configuration): each mode, and hybrid with the baseline configuration
        # timed in turn with them, query by query.
        runs = [(m, m, ours) for m in MODES]
        runs += [(BASELINE, "hybrid", baseline)] if baseline else []
        sql_ms: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        e2e_ms: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        hits: dict[str, list[bool]] = {label: [] for label, _, _ in runs}
        cpu_s: dict[str, float] = {label: 0.0 for label, _, _ in runs}
        by_tenant: dict[str, dict[str, list[float]]] = {"hybrid": {}, BASELINE: {}}
        with connect(dsn, autocommit=True) as conn:
            settings = {
                name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
                for name in PG_SETTINGS
            }
            print("postgres settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
            for q, v in zip(queries, qvecs, strict=True):  # warm-up pass, untimed
                for _, mode, f in runs:
                    run_search(conn, q.query, v, q.tenant_id, limit=10, mode=mode, **opts(f))
            for _ in range(args.repeat):
                for q, v in zip(queries, qvecs, strict=True):
                    for label, mode, f in runs:
                        c0 = backend_cpu_s(conn.info.backend_pid)
                        t = time.perf_counter()
                        found = run_search(
                            conn, q.query, v, q.tenant_id, limit=10, mode=mode, **opts(f)
                        )
                        sql_ms[label].append((time.perf_counter() - t) * 1e3)
                        cpu_s[label] += backend_cpu_s(conn.info.backend_pid) - c0
                        if label in by_tenant:
                            tenant_ms = by_tenant[label].setdefault(q.tenant_id, [])
                            tenant_ms.append(sql_ms[label][-1])
                        if label in hits and len(hits[label]) < len(queries):
                            ids = [h.doc_id for h in found]
                            hits[label].append(hit_at_10(ids, q.relevant_ids))
                        t = time.perf_counter()
                        vec = None if mode == "lexical" else embedder.embed([q.query])[0]
                        run_search(conn, q.query, vec, q.tenant_id, limit=10, mode=mode, **opts(f))
                        e2e_ms[label].append((time.perf_counter() - t) * 1e3)
            tenants = sorted({d.tenant_id for d in docs})
            recall = {
                tenant: hnsw_recall(conn, [(tenant, v) for v in qvecs], **ours.scan_options())
                for tenant in tenants
            }
            graph = {
                tenant: hnsw_recall(
                    conn,
                    [(tenant, v) for v in qvecs],
                    ef_search=ours.ef_search,
                    exact_scan_max_docs=0,
                )
                for tenant in tenants
            }
            shares = {t: sum(d.tenant_id == t for d in docs) / len(docs) for t in tenants}

    if args.reindex_docs:
        print(
            f"reindex, {len(small):,} docs, real int8 embedder {model_sha[:12]}: full build "
            f"{full_s:.1f} s (embedded {full.embedded:,}); incremental after 1% changed "
            f"{inc_s:.2f} s (embedded {inc.embedded:,}) -> {inc_s / full_s:.1%} of full "
            f"(target <= 5%: {'met' if inc_s / full_s <= 0.05 else 'MISSED'})"
        )
    print(
        f"scale: {scale.total:,} documents (expanded from {len(base):,} shipped, "
        f"{args.proxy} proxy vectors); "
        f"COPY + HNSW + GIN build {scale_s:.1f} s"
    )
    print(
        f"queries: {len(queries)} labelled x {args.repeat} repeats, limit 10; lexical ranks at "
        f"most {ours.fusion.lexical_budget} candidates; ef_search {ours.ef_search}; exact vector "
        f"scan for tenants <= {ours.exact_scan_max_docs:,} docs"
    )
    for label in sql_ms:
        print(
            f"  {label:<8} SQL  {pct(sql_ms[label])}   end to end (with embedding) "
            f"{pct(e2e_ms[label])}"
        )
    print(
        "  Postgres backend CPU per SQL query (mean, not inflated by other load): "
        + ", ".join(f"{k} {v / len(sql_ms[k]) * 1e3:.2f} ms" for k, v in cpu_s.items())
    )
    if baseline:
        ratios = [
            f"{kind} p{q} {np.percentile(ms['hybrid'], q) / np.percentile(ms[BASELINE], q):.2f}"
            for kind, ms in (("SQL", sql_ms), ("end to end", e2e_ms))
            for q in (50, 95)
        ]
        print(f"  hybrid / {BASELINE} (timed in turn): " + ", ".join(ratios))
    for label, tenants_ms in by_tenant.items():
        for tenant, samples in sorted(tenants_ms.items()):
            print(f"  {label} SQL in {tenant:<22} ({shares[tenant]:5.1%} of docs): {pct(samples)}")
    hyb_sql = np.percentile(sql_ms["hybrid"], 95)
    hyb_e2e = np.percentile(e2e_ms["hybrid"], 95)
    worst_tenant = max(np.percentile(v, 95) for v in by_tenant["hybrid"].values())
    print(
        f"targets: hybrid SQL p95 < 25 ms: {'met' if hyb_sql < 25 else 'MISSED'}; "
        f"in every tenant (worst {worst_tenant:.2f} ms): "
        f"{'met' if worst_tenant < 25 else 'MISSED'}; "
        f"end to end p95 < 35 ms: {'met' if hyb_e2e < 35 else 'MISSED'}"
    )
    print(
        "  labelled relevant doc (or one expanded from it) in the top 10 at this scale: "
        + ", ".join(f"{label} {np.mean(found):.3f}" for label, found in hits.items())
    )
    for tenant in sorted(recall):
        print(
            f"  recall@10 vs exact, {tenant:<22} ({shares[tenant]:5.1%} of docs): as searched "
            f"{recall[tenant]:.3f}; HNSW graph walk alone {graph[tenant]:.3f}"
        )
    worst = min(min(recall.values()), min(graph.values()))
    print(f"target recall@10 >= 0.95: {'met' if worst >= 0.95 else 'MISSED'}")
    print(f"load average at end (1/5/15 min): {fmt_load()}")


if __name__ == "__main__":
    main()
