"""`POST /embed` with and without cross-request batching: 16 concurrent clients sending 8 new
short texts each, against two servers of the same service code, Bento bundle and models that
differ only in ML_SERVING_EMBED_BATCH (1: serving/batcher.py; 0: one embedder call per request
on the worker's thread pool). Both are started first and measured in interleaved rounds, so a
change in the machine's load falls on both; medians of the rounds are shown.

Each client keeps one keep-alive connection (http.client) and posts back to back; every text is
new (a counter in it), so the embedding cache never answers. Prints req/s, texts/s,
p50/p95/p99 per request, the ratio batched / unbatched, the batch sizes the server reports on
/metrics, and the machine (CPU model, load average before and after).

    .venv/bin/python benchmarks/embed_batching.py --bentoml-home .ml-assets/bentoml \
        --tag ml-assets:<version> [--clients 16] [--texts 8] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.embedding_throughput import make_texts  # noqa: E402
from benchmarks.load_loop import post_loop  # noqa: E402
from ml_assets.bundle.serving_process import ServerProcess, start_server  # noqa: E402

TARGET_RATIO = 2.0
SENTENCES = make_texts(512)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load(url: str, clients: int, texts: int, seconds: float, counter: itertools.count) -> dict:
    """`clients` threads posting `texts` new texts each to /embed, back to back."""
    versions: set[str] = set()

    def body() -> str:
        n = next(counter)
        return json.dumps(
            {"texts": [f"{SENTENCES[(n + j) % len(SENTENCES)]} (#{n}.{j})" for j in range(texts)]}
        )

    def check(status: int, answer: bytes) -> str | None:
        if status != 200:
            return f"{status} {answer[:200]!r}"
        data = json.loads(answer)
        versions.add(data["model_version"])
        if len(data["vectors"]) != texts:
            return f"{len(data['vectors'])} vectors for {texts} texts"
        return None

    loop = post_loop(url, "/embed", clients, seconds, body, check)
    return {
        "rps": loop.rps,
        "texts_per_s": loop.rps * texts,
        "p50": loop.percentile(50),
        "p95": loop.percentile(95),
        "p99": loop.percentile(99),
        "errors": loop.errors,
        "versions": versions,
    }


def batch_sizes(url: str) -> str:
    """Mean texts and requests per embedder run, from the server's /metrics histograms."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name.startswith("ml_assets_embed_batch_") and s.name.endswith(("_sum", "_count")):
                sums[s.name] = sums.get(s.name, 0.0) + s.value
    runs = sums.get("ml_assets_embed_batch_texts_count", 0.0)
    if not runs:
        return "no batcher runs"
    texts = sums["ml_assets_embed_batch_texts_sum"] / runs
    requests = sums["ml_assets_embed_batch_requests_sum"] / runs
    return f"{runs:,.0f} embedder runs, {texts:.1f} texts / {requests:.1f} requests each"


def model_ceiling(home: Path, bundle: Path, texts: int, batch: int, reps: int = 3) -> str:
    """In process, one thread: the served embedder on 512 short texts in calls of `texts` vs
    calls of `batch`, the most that batching can gain inside the model."""
    from ml_assets.search.text_embedder import OnnxTextEmbedder

    entry = json.loads(bundle.read_text())["models"]["embedder"]
    model_dir = home / "models" / entry["registered_model"]
    model_dir = next(d for d in model_dir.iterdir() if entry["files"]["model.onnx"][:12] in d.name)
    embedder = OnnxTextEmbedder(
        (model_dir / "model.onnx").read_bytes(), model_dir / "tokenizer.json", intra_op_threads=1
    )
    sentences = [f"{s} (#{i})" for i, s in enumerate(SENTENCES)]
    embedder.embed(sentences[:batch])
    small, large = [], []
    for _ in range(reps):
        for size, times in ((texts, small), (batch, large)):
            start = time.perf_counter()
            for i in range(0, len(sentences), size):
                embedder.embed(sentences[i : i + size])
            times.append(time.perf_counter() - start)
    a, b = statistics.median(small), statistics.median(large)
    return (
        f"in process, 1 thread, {len(sentences)} texts: calls of {texts} {a:.2f} s, calls of "
        f"{batch} {b:.2f} s -> batching can gain at most {a / b:.2f}x inside the model"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bentoml-home", required=True, type=Path)
    ap.add_argument("--tag", required=True, help="the Bento whose bundle and models to serve")
    ap.add_argument("--src", type=Path, default=REPO, help="the service code (a checkout)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--texts", type=int, default=8, help="texts per request")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="both servers")
    args = ap.parse_args()

    home, src = args.bentoml_home.resolve(), args.src.resolve()
    name, version = args.tag.split(":")
    bundle = home / "bentos" / name / version / "src" / "serving" / "bundle.json"
    common = dict(kv.split("=", 1) for kv in args.env)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{cpu_model()}, {os.cpu_count()} CPUs; python {platform.python_version()}")
    print(
        f"bento {args.tag} (bundle and models), service code {src}; {args.workers} workers "
        f"each; {args.clients} clients x {args.texts} new texts; {args.duration:.0f} s per "
        f"point; {args.rounds} interleaved round(s)"
    )
    labels = {
        "unbatched (ML_SERVING_EMBED_BATCH=0)": "0",
        "batched (ML_SERVING_EMBED_BATCH=1)": "1",
    }
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    counter = itertools.count()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for i, (label, flag) in enumerate(labels.items()):
            env = {
                **common,
                "ML_SERVING_EMBED_BATCH": flag,
                "ML_SERVING_BUNDLE": str(bundle),
                "ML_SERVING_RELEASE_FILE": str(Path(tmp) / f"release-{i}.json"),
                "PYTHONPATH": str(src),
            }
            servers[label] = stack.enter_context(
                start_server(
                    "serving.service:MLService",
                    bentoml_home=home,
                    workers=args.workers,
                    env=env,
                    log_path=Path(tmp) / f"server-{i}.log",
                    cwd=src,
                )
            )
        for server in servers.values():
            server.wait_ready()
            load(server.url, args.clients, args.texts, 2, counter)  # warm-up
        for r in range(args.rounds):
            for label, server in servers.items():
                res = load(server.url, args.clients, args.texts, args.duration, counter)
                runs[label].append(res)
                print(
                    f"round {r + 1} {label:38s} {res['rps']:7.1f} req/s {res['texts_per_s']:7.0f} "
                    f"texts/s  p50/p95/p99 {res['p50']:6.1f} / {res['p95']:6.1f} / "
                    f"{res['p99']:6.1f} ms  errors {len(res['errors'])}"
                    + (f" (first: {res['errors'][0]})" if res["errors"] else ""),
                    flush=True,
                )
        # The unbatched server has no batcher runs to report (and both share BENTOML_HOME's
        # prometheus directory, which the later start emptied): the batched one's are these.
        sizes = batch_sizes(servers[next(reversed(labels))].url)
    print()
    print("| server | req/s | texts/s | p50 / p95 / p99 ms | errors | model_version |")
    print("|---|---|---|---|---|---|")
    med: dict[str, dict[str, float]] = {}
    for label, results in runs.items():
        med[label] = {
            k: statistics.median(r[k] for r in results)
            for k in ("rps", "texts_per_s", "p50", "p95", "p99")
        }
        m = med[label]
        errors = sum(len(r["errors"]) for r in results)
        versions = sorted(set().union(*(r["versions"] for r in results)))
        print(
            f"| {label} | {m['rps']:.1f} | {m['texts_per_s']:.0f} | {m['p50']:.1f} / "
            f"{m['p95']:.1f} / {m['p99']:.1f} | {errors} | {', '.join(versions)} |"
        )
    (off, on) = (med[label] for label in labels)
    ratio = on["texts_per_s"] / off["texts_per_s"]
    print()
    print(f"batched server: {sizes}")
    print(model_ceiling(home, bundle, args.texts, 64))
    print(
        f"batched / unbatched: throughput {ratio:.2f}x, p50 {on['p50'] / off['p50']:.2f}x, "
        f"p95 {on['p95'] / off['p95']:.2f}x, p99 {on['p99'] / off['p99']:.2f}x"
    )
    verdict = "MET" if ratio >= TARGET_RATIO else "MISSED"
    print(f"target: throughput >= {TARGET_RATIO:.1f}x -> {verdict}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
