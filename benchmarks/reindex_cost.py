"""What a sharded reindex costs: one shard's documents/s, the per-run overhead, how two shard
runs share this machine, the index build from the shards, and the time to reindex 10M docs.

One process (plus the worker subprocesses it times), on the embedded PostgreSQL 18 + pgvector
and the real int8 embedder (exported here, as embedding_model_onnx does):
- one shard's documents/s: `embed_shard` on one of 4 shards of the shipped corpus, with 1 and
  with 2 ONNX threads (embedding and the staging write; the model already loaded);
- per-run overhead: a fresh Python process that imports the code location
  (`ml_assets.definitions`, what every Dagster run worker loads) and loads the embedder
  (sha256, ORT session), timed from outside; Dagster's own run bookkeeping (run storage,
  event log writes, resource set-up) comes on top and is not in this figure;
- two shard runs at once with one ONNX thread each against one such run (the same documents
  each), pairs interleaved: the ratio of documents/s against the ideal 2x, embedding alone
  and with the per-run overhead included;
- the assembly (`search_assemble.assemble`: staging -> index table, HNSW m=24/ef 200, GIN,
  statistics, switch) at --build-sizes documents of synthetic text whose vectors are mixtures
  of the corpus's real embeddings, then extrapolated to 10M: time as n log n fitted to the
  largest size, memory (index size) linear;
- the 10M table: waves of shard runs x (overhead + shard documents / documents/s) + the
  assembly, for 1, 4, 16 and 64 runs at once on CPU, and on a GPU as an ESTIMATE (no GPU here).

    .venv/bin/python benchmarks/reindex_cost.py [--build-sizes 5000,10000,20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Nothing of ml_assets at module level: the worker child times its own imports from scratch.

TARGET_DOCS = 10_000_000
TARGET_SHARDS = 256
RUNS_AT_ONCE = (1, 4, 16, 64)
# GPU ESTIMATE (no GPU is lent to this project): MiniLM-L6 costs ~21 MFLOP per token
# (docs/STACK.md); an inference GPU of the T4/L4 class sustains, by assumption, 20 TFLOP/s of
# fp16 on batched BERT-small inference with ONNX Runtime's CUDA provider (~30% of peak).
GPU_FLOPS_ASSUMED = 20e12
FLOP_PER_TOKEN = 21e6
GPU_RUN_OVERHEAD_EXTRA_S = 10.0  # CUDA context + provider start, assumed


def worker(args: argparse.Namespace) -> None:
    """A child: import the code location, load the embedder, embed; print the timings."""
    t0 = time.perf_counter()
    from ml_assets.definitions import build_definitions
    from ml_assets.platform.hashing import sha256_bytes
    from ml_assets.search.text_embedder import OnnxTextEmbedder

    build_definitions()  # what a run worker does: `@dg.definitions` builds the code location
    t1 = time.perf_counter()
    data = Path(args.model).read_bytes()
    sha256_bytes(data)
    embedder = OnnxTextEmbedder(data, args.tokenizer, max_length=256, intra_op_threads=1)
    t2 = time.perf_counter()
    texts = json.loads(Path(args.texts).read_text())
    if texts:
        embedder.embed(texts)
    t3 = time.perf_counter()
    print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "embed": t3 - t2, "n": len(texts)}))


def spawn(model: Path, tokenizer: Path, texts: Path) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--model", str(model), "--tokenizer",
           str(tokenizer), "--texts", str(texts)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)


def timed_workers(n: int, model: Path, tokenizer: Path, texts: Path) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    procs = [spawn(model, tokenizer, texts) for _ in range(n)]
    outs = [json.loads(p.communicate(timeout=1800)[0].strip().splitlines()[-1]) for p in procs]
    return time.perf_counter() - start, outs


class MixEmbedder:
    """Vectors for synthetic documents: normalised mixtures of the corpus's real embeddings
    (so the HNSW graph sees vectors shaped like real ones), looked up by text."""

    def __init__(self, vectors: dict[str, np.ndarray], dim: int) -> None:
        self._vectors, self.dim = vectors, dim

    def embed(self, texts):
        return np.stack([self._vectors[t] for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model"), parser.add_argument("--tokenizer")
    parser.add_argument("--texts")
    parser.add_argument("--build-sizes", default="5000,10000,20000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker-docs", type=int, default=200)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from benchmarks.search_latency import cpu, expand, fmt_load
    from ml_assets.local.stack import ensure_databases, start_embedded_postgres
    from ml_assets.platform.dsn import with_database
    from ml_assets.platform.hashing import sha256_bytes
    from ml_assets.search.assemble import assemble
    from ml_assets.search.corpus import default_corpus_path, load_corpus
    from ml_assets.search.embedder_export import export_fp32, quantize_int8, tokenizer_path
    from ml_assets.search.index import embedding_text
    from ml_assets.search.shards import embed_shard, shard_keys, split
    from ml_assets.search.tables import connect
    from ml_assets.search.text_embedder import OnnxTextEmbedder

    print(f"machine: {cpu()}; load average at start: {fmt_load()}")
    docs = list(load_corpus(default_corpus_path()).documents)
    int8 = quantize_int8(export_fp32())
    model_sha = sha256_bytes(int8)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "run").mkdir(mode=0o700)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(tmpdir / "run"))
        server = start_embedded_postgres(tmpdir / "pg", stop_on_exit=True)
        ensure_databases(server)
        dsn = with_database(server, "ml_assets")

        # One shard's documents/s, model loaded, 1 and 2 ONNX threads.
        shard = shard_keys(4)[0]
        mine = split(docs, 4)[shard]
        tokens = []
        rates = {}
        for threads in (1, 2):
            embedder = OnnxTextEmbedder(int8, tokenizer_path(), intra_op_threads=threads)
            with connect(dsn) as conn:
                conn.execute("DROP SCHEMA IF EXISTS search CASCADE")
                conn.commit()
            stats = embed_shard(dsn, docs, 4, shard, embedder, model_sha)
            rates[threads] = stats.embedded / stats.seconds
            print(
                f"one shard ({stats.embedded} docs of {len(docs)}, shard {shard} of 4), "
                f"{threads} ONNX thread(s): {stats.seconds:.1f} s, {rates[threads]:.1f} docs/s"
            )
        from tokenizers import Tokenizer

        enc = Tokenizer.from_file(str(tokenizer_path())).encode_batch(
            [embedding_text(d) for d in mine]
        )
        tokens = [min(len(e.ids), 256) for e in enc]
        tokens_per_doc = float(np.mean(tokens))

        # Per-run overhead and two runs at once (1 ONNX thread each), interleaved pairs.
        model_path, texts_path, none_path = tmpdir / "m.onnx", tmpdir / "t.json", tmpdir / "0.json"
        model_path.write_bytes(int8)
        texts_path.write_text(json.dumps([embedding_text(d) for d in docs[: args.worker_docs]]))
        none_path.write_text("[]")
        overhead = []
        singles, pairs = [], []
        for _ in range(args.rounds):
            wall, (out,) = timed_workers(1, model_path, tokenizer_path(), none_path)
            overhead.append((wall, out["imports"], out["load"]))
            singles.append(timed_workers(1, model_path, tokenizer_path(), texts_path))
            pairs.append(timed_workers(2, model_path, tokenizer_path(), texts_path))
        run_overhead = float(np.median([o[0] for o in overhead]))
        print(f"per-run overhead (process start + import ml_assets.definitions + model load), "
              f"median of {args.rounds}: {run_overhead:.2f} s (imports "
              f"{np.median([o[1] for o in overhead]):.2f} s, model load "
              f"{np.median([o[2] for o in overhead]):.2f} s)")  # fmt: skip
        n = args.worker_docs
        one_embed = float(np.median([outs[0]["embed"] for _, outs in singles]))
        two_embed = float(np.median([max(o["embed"] for o in outs) for _, outs in pairs]))
        one_wall = float(np.median([w for w, _ in singles]))
        two_wall = float(np.median([w for w, _ in pairs]))
        print(
            f"two shard runs at once vs one (1 ONNX thread each, {n} docs each, "
            f"{args.rounds} interleaved rounds):"
        )
        print(
            f"  embedding only: one {n / one_embed:.1f} docs/s, two together "
            f"{2 * n / two_embed:.1f} docs/s -> {(2 * n / two_embed) / (n / one_embed):.2f}x "
            "(ideal 2x)"
        )
        print(
            f"  whole runs (overhead included): one {n / one_wall:.1f} docs/s, two together "
            f"{2 * n / two_wall:.1f} docs/s -> {(2 * n / two_wall) / (n / one_wall):.2f}x"
        )

        # The assembly at growing sizes, vectors mixed from the real ones.
        base_vecs = OnnxTextEmbedder(int8, tokenizer_path()).embed(
            [embedding_text(d) for d in docs]
        )
        rng = np.random.default_rng(7)
        builds = []
        for size in [int(s) for s in args.build_sizes.split(",")]:
            synth = [replace(d, id=f"{d.id}#{size}") for d in expand(tuple(docs), size)]
            idx = rng.integers(0, len(docs), size=(len(synth), 2))
            mix = (
                base_vecs[idx[:, 0]] + base_vecs[idx[:, 1]] + rng.normal(0, 0.02, (len(synth), 384))
            )
            mix = (mix / np.linalg.norm(mix, axis=1, keepdims=True)).astype(np.float32)
            vectors = {embedding_text(d): v for d, v in zip(synth, mix, strict=True)}
            synth = [d for d in synth if embedding_text(d) in vectors]
            fake_sha = sha256_bytes(f"bench-{size}".encode())
            proxy = MixEmbedder(vectors, 384)
            for key in shard_keys(2):
                embed_shard(dsn, synth, 2, key, proxy, fake_sha)
            t0 = time.perf_counter()
            stats = assemble(dsn, synth, 2, fake_sha, "bench")
            seconds = time.perf_counter() - t0
            with connect(dsn) as conn:
                hnsw, table = conn.execute(
                    "SELECT pg_relation_size(%s), pg_total_relation_size(%s)",
                    (f"search.{stats.table}_hnsw", f"search.{stats.table}"),
                ).fetchone()
            builds.append((len(synth), seconds, hnsw, table))
            print(f"assembly of {len(synth):,} docs (copy + HNSW + GIN + statistics + switch): "
                  f"{seconds:.1f} s; HNSW {hnsw / 2**20:.1f} MiB, table + indexes "
                  f"{table / 2**20:.1f} MiB")  # fmt: skip
        print(f"load average after the measurements: {fmt_load()}")

    report(rates, run_overhead, tokens_per_doc, builds, two_embed, one_embed)


def report(rates, run_overhead, tokens_per_doc, builds, two_embed, one_embed) -> None:
    n_big, s_big, hnsw_big, table_big = builds[-1]
    scale = (TARGET_DOCS * math.log(TARGET_DOCS)) / (n_big * math.log(n_big))
    build_10m = s_big * scale
    hnsw_10m = hnsw_big / n_big * TARGET_DOCS
    table_10m = table_big / n_big * TARGET_DOCS
    shard_docs = TARGET_DOCS / TARGET_SHARDS
    gpu_rate = GPU_FLOPS_ASSUMED / (FLOP_PER_TOKEN * tokens_per_doc)
    share = one_embed / two_embed  # each of two runs' speed vs running alone, here
    print()
    print(
        f"## Reindexing {TARGET_DOCS:,} documents in {TARGET_SHARDS} shards "
        f"({shard_docs:,.0f} docs each; {tokens_per_doc:.0f} tokens/doc as the shipped corpus)"
    )
    print("| runs at once | CPU: 1 core per run | GPU (ESTIMATE): 1 GPU per run | waves |")
    print("|---|---|---|---|")
    for runs in RUNS_AT_ONCE:
        waves = math.ceil(TARGET_SHARDS / runs)
        cpu_h = (waves * (run_overhead + shard_docs / rates[1]) + build_10m) / 3600
        gpu_h = (waves * (run_overhead + GPU_RUN_OVERHEAD_EXTRA_S + shard_docs / gpu_rate)
                 + build_10m) / 3600  # fmt: skip
        print(f"| {runs} | {cpu_h:,.1f} h | {gpu_h:,.1f} h | {waves} |")
    print(
        f"\nCPU: {rates[1]:.1f} docs/s per 1-thread run (measured above; 2 threads: "
        f"{rates[2]:.1f}),"
        f" each run on its own core (a node per run); on this 2-core VM two runs at once each ran"
        f" at {share:.2f}x of one alone. Per-run overhead {run_overhead:.1f} s x {TARGET_SHARDS}"
        f" runs. GPU: ESTIMATED, not measured: {gpu_rate:,.0f} docs/s per GPU from an assumed"
        f" {GPU_FLOPS_ASSUMED / 1e12:.0f} TFLOP/s sustained at {FLOP_PER_TOKEN / 1e6:.0f} MFLOP"
        f"/token, plus {GPU_RUN_OVERHEAD_EXTRA_S:.0f} s of CUDA start per run (assumed)."
    )
    print(
        f"Index build (one unpartitioned step, both columns): {build_10m / 3600:.1f} h, "
        f"extrapolated as n log n from {n_big:,} docs in {s_big:.1f} s on this machine; HNSW "
        f"{hnsw_10m / 2**30:.1f} GiB, table + indexes {table_10m / 2**30:.1f} GiB (linear)."
    )
    print(
        "When one Postgres stops being enough: pgvector builds HNSW fast only while the graph "
        f"fits maintenance_work_mem (here 1GB: up to ~{2**30 / (hnsw_big / n_big) / 1e6:.1f}M "
        f"docs); at 10M it needs ~{hnsw_10m / 2**30:.0f} GiB of it (and of RAM to keep the graph "
        "cached for searches) or the build slows by an order of magnitude; give the build parallel"
        " maintenance workers and that memory. Past what one server's RAM caches, or when searches"
        " and the build contend: read replicas for /search (the switch replicates as one "
        "transaction), then per-tenant partitioned tables (LIST on tenant_id, one HNSW per "
        "partition: smaller graphs, builds in parallel, a tenant's reindex touches its own)."
    )


if __name__ == "__main__":
    main()
