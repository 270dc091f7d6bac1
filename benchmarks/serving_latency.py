"""Serving benchmark: the served Bento (and any checkouts of the service code) vs a minimal
FastAPI + ONNX Runtime app doing the same scoring, on uvicorn with uvloop and httptools and the
same number of workers. Every server is started first and the points are taken interleaved
(each connection count on every server in turn, `--rounds` times, medians shown), so a change
in the machine's load falls on all of them. Prints throughput and two kinds of percentile:

- "client p50/p95/p99": real per-request times measured by a closed-loop client (N threads,
  one keep-alive connection each, http.client), i.e. what each request took;
- "wrk p50/p99": what wrk prints (wrk corrects for coordinated omission, so a server stall
  shows up as the latency a client sending at a steady rate would see);

then ratios to FastAPI, and /embed: 64 new texts, the same 64 again (the embedding cache), and
16 concurrent clients of 8 new texts each. `--log-on-off` serves the Bento twice, the inference
log off and on at sample rate 1.0 (into `--log-dsn`, or an embedded Postgres it starts), and
adds the log-on server's logged and dropped rows and the on/off ratios.

Needs a built bundle (materialize serving_bundle, e.g. via `ml-assets up`) and `wrk` on PATH
(Debian: apt-get install wrk). Examples:

    .venv/bin/python benchmarks/serving_latency.py --bentoml-home .ml-assets/bentoml \
        --tag ml-assets:<version> --duration 10
    # before/after: an older checkout and this one, on the Bento's models
    git archive <old-commit> | tar -x -C /tmp/before
    .venv/bin/python benchmarks/serving_latency.py --bentoml-home .ml-assets/bentoml \
        --tag ml-assets:<version> --no-bento --src before=/tmp/before --src after=. --rounds 2
    # the inference log on (every request) and off, single-score only
    .venv/bin/python benchmarks/serving_latency.py --bentoml-home .ml-assets/bentoml \
        --tag ml-assets:<version> --log-on-off --no-embed --conns 16,64 --duration 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import inference_log_mode as log_mode  # noqa: E402
from benchmarks.load_loop import post_loop  # noqa: E402
from ml_assets.bundle.serving_process import ServerProcess, free_port, start_server  # noqa: E402
from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION  # noqa: E402

BODY = json.dumps({"transaction": SMOKE_TRANSACTION})
JSON_HEADERS = {"Content-Type": "application/json"}
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "seconds": %%f, "errors": %%d, '
    .. '"non2xx": %%d, "p50": %%f, "p95": %%f, "p99": %%f}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""


def wrk(url: str, conns: int, seconds: float, lua: Path) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "-s", str(lua), f"{url}/v1/score"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    data["rps"] = data["requests"] / data["seconds"]
    return data


def closed_loop(url: str, conns: int, seconds: float) -> dict:
    """N threads, each with one keep-alive connection, sending back to back."""
    loop = post_loop(url, "/v1/score", conns, seconds, lambda: BODY, timeout=30)
    return {
        "rps": loop.rps,
        "p50": loop.percentile(50),
        "p95": loop.percentile(95),
        "p99": loop.percentile(99),
        "errors": len(loop.errors),
    }


def timed_posts(url: str, path: str, body: Callable[[int], dict], n: int) -> dict:
    """p50/p95 of n sequential posts of body(i) (body(-1) first, untimed)."""
    with httpx.Client(base_url=url, timeout=60) as c:
        c.post(path, json=body(-1)).raise_for_status()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            c.post(path, json=body(i)).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(times), "p95": float(np.percentile(times, 95))}


def start_baseline(onnx: Path, workers: int, log: Path) -> ServerProcess:
    """The FastAPI baseline on uvicorn with uvloop and httptools (as the service gets them),
    and the same number of workers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("uvicorn")),
            "benchmarks.fastapi_baseline:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env={**os.environ, "ML_BASELINE_ONNX": str(onnx)},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(
                f"{server.url}/v1/score", content=BODY, headers=JSON_HEADERS, timeout=2
            ).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"baseline did not start:\n{server.log_tail()}")


def fraud_model_file(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    bundle = json.loads((home / "bentos" / name / version / "src/serving/bundle.json").read_text())
    fraud = bundle["models"]["fraud"]
    sha = fraud["files"]["model.onnx"]
    return (
        home
        / "models"
        / fraud["registered_model"]
        / f"v{fraud['version']}-{sha[:12]}"
        / ("model.onnx")
    )


def bento_src(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "bentos" / name / version / "src"


def start_source(src: Path, home: Path, tag: str, workers: int, env: dict, log: Path):
    """The service code in `src` (a checkout) with the Bento's bundle and models: two versions
    of the service compared on the same models."""
    run_env = {
        **env,
        "ML_SERVING_BUNDLE": str(bento_src(home, tag) / "serving" / "bundle.json"),
        "PYTHONPATH": str(src),
    }
    return start_server(
        "serving.service:MLService",
        bentoml_home=home,
        workers=workers,
        env=run_env,
        log_path=log,
        cwd=src,
    )


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def measure(url: str, n: int, seconds: float, lua: Path) -> tuple[dict, dict]:
    wrk(url, n, 2, lua)  # warm-up
    return wrk(url, n, seconds, lua), closed_loop(url, n, seconds)


def embed_concurrency(url: str, clients: int, texts: int, seconds: float) -> dict:
    """`clients` threads each posting `texts` distinct short texts to /embed, back to back."""
    counter = iter(range(10**9))

    def body() -> str:
        return json.dumps(
            {"texts": [f"power baseload contract {next(counter)} delivery" for _ in range(texts)]}
        )

    loop = post_loop(url, "/embed", clients, seconds, body)
    if loop.errors:
        raise RuntimeError(f"/embed failed under load: {loop.errors[:3]}")
    return {"texts_per_s": loop.rps * texts, "p95_ms": loop.percentile(95)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bentoml-home", required=True, type=Path)
    ap.add_argument("--tag", required=True, help="the Bento, e.g. ml-assets:<version>")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point and method")
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians shown")
    ap.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also serve the service code of checkout DIR (with the Bento's bundle and models) "
        "as LABEL; e.g. before=/tmp/old-checkout",
    )
    ap.add_argument("--no-bento", action="store_true", help="serve only the --src checkouts")
    ap.add_argument("--env", action="append", default=[], metavar="LABEL:KEY=VALUE")
    ap.add_argument(
        "--log-on-off",
        action="store_true",
        help="serve the Bento twice: the inference log off, and on at sample rate 1.0",
    )
    ap.add_argument("--log-dsn", help="the log's Postgres (default: an embedded one, for the run)")
    ap.add_argument("--no-embed", action="store_true", help="skip the /embed measurements")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found on PATH (apt-get install wrk); it gives the CO-corrected figures")
        return 2
    import httptools
    import uvicorn
    import uvloop

    home = args.bentoml_home.resolve()
    conns = [int(c) for c in args.conns.split(",")]
    onnx = fraud_model_file(home, args.tag)
    print(log_mode.cpu_line())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"bento {args.tag}; fraud model {onnx.parent.name}; {args.duration:.0f} s per point; "
        f"{args.rounds} interleaved round(s); {args.workers} workers each; uvicorn "
        f"{uvicorn.__version__}, uvloop {uvloop.__version__}, httptools {httptools.__version__}"
    )
    extra_env: dict[str, dict[str, str]] = {}
    for item in args.env:
        label, kv = item.split(":", 1)
        key, value = kv.split("=", 1)
        extra_env.setdefault(label, {})[key] = value
    results: dict[tuple[str, int], list[tuple[dict, dict]]] = {}
    extra: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        lua = Path(tmp) / "post.lua"
        lua.write_text(WRK_LUA % BODY)
        servers: dict[str, ServerProcess] = {}
        base = f"FastAPI + uvicorn (uvloop, httptools), {args.workers} workers"
        servers[base] = stack.enter_context(
            start_baseline(onnx, args.workers, Path(tmp) / "fastapi.log")
        )
        modes: dict[str, dict[str, str]] = {f"bento {args.tag}": {}}
        if args.log_on_off:  # the tag is in the header: the labels name the mode
            dsn = log_mode.log_dsn(args.log_dsn, Path(tmp))
            modes = {f"bento, {mode}": env for mode, env in log_mode.envs(dsn).items()}
        for label, mode_env in modes.items() if not args.no_bento else ():
            server = start_server(
                args.tag,
                bentoml_home=home,
                workers=args.workers,
                env={**extra_env.get("bento", {}), **mode_env},
                log_path=Path(tmp) / f"bento{len(servers)}.log",
            )
            servers[label] = stack.enter_context(server)
        for item in args.src:
            label, src = item.split("=", 1)
            server = start_source(
                Path(src).resolve(),
                home,
                args.tag,
                args.workers,
                extra_env.get(label, {}),
                Path(tmp) / f"{label}.log",
            )
            servers[label] = stack.enter_context(server)
        for label, server in servers.items():
            if not label.startswith("FastAPI"):
                server.wait_ready()
        for _ in range(args.rounds):
            for n in conns:
                for label, server in servers.items():  # interleaved: same minute, same load
                    w, c = measure(server.url, n, args.duration, lua)
                    results.setdefault((label, n), []).append((w, c))
                    print(
                        f"{label:40.40s} conns {n:3d}  wrk {w['rps']:8,.0f} req/s "
                        f"(errors {w['errors'] + w['non2xx']})  client {c['rps']:7,.0f} req/s  "
                        f"client p50/p95/p99 {c['p50']:6.2f} / {c['p95']:6.2f} / {c['p99']:6.2f} ms"
                        f"  wrk p50/p99 {w['p50']:7.2f} / {w['p99']:7.2f} ms",
                        flush=True,
                    )

        def texts(i: int) -> dict:  # 64 texts no earlier request sent
            return {"texts": [f"front-month power baseload contract {i}.{j}" for j in range(64)]}

        def same(_: int) -> dict:  # the same 64 texts every time (the embedding cache answers)
            return texts(-1)

        if args.log_on_off and not args.no_bento:
            on = servers[f"bento, {log_mode.ON}"]
            time.sleep(1.0)  # the writer flushes every 0.2 s
            written = log_mode.written(on.url, dsn)
        for label, server in servers.items():
            if label.startswith("FastAPI") or args.no_embed:
                continue
            extra[label] = {
                "embed_64": timed_posts(server.url, "/embed", texts, 20),
                "embed_64_repeated": timed_posts(server.url, "/embed", same, 20),
                "embed_16x8": embed_concurrency(server.url, 16, 8, args.duration),
            }
    print()
    print(
        "| server | conns | wrk req/s | client req/s | client p50 / p95 / p99 ms "
        "| wrk p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for (label, n), runs in results.items():
        row = {
            "rps": median([w["rps"] for w, _ in runs]),
            "crps": median([c["rps"] for _, c in runs]),
            "p50": median([c["p50"] for _, c in runs]),
            "p95": median([c["p95"] for _, c in runs]),
            "p99": median([c["p99"] for _, c in runs]),
            "wp50": median([w["p50"] for w, _ in runs]),
            "wp99": median([w["p99"] for w, _ in runs]),
        }
        summary[(label, n)] = row
    for label in servers:
        for n in conns:
            r = summary[(label, n)]
            print(
                f"| {label} | {n} | {r['rps']:,.0f} | {r['crps']:,.0f} | "
                f"{r['p50']:.2f} / {r['p95']:.2f} / {r['p99']:.2f} | "
                f"{r['wp50']:.2f} / {r['wp99']:.2f} |"
            )
    print()
    print(
        "| server | conns | wrk req/s vs FastAPI | client p50 / p95 / p99 vs FastAPI | wrk p99 ms |"
    )
    print("|---|---|---|---|---|")
    for label in servers:
        if label == base:
            continue
        for n in conns:
            r, b = summary[(label, n)], summary[(base, n)]
            print(
                f"| {label} | {n} | {r['rps'] / b['rps']:.2f} | {r['p50'] / b['p50']:.2f} / "
                f"{r['p95'] / b['p95']:.2f} / {r['p99'] / b['p99']:.2f} | {r['wp99']:.1f} |"
            )
    if args.log_on_off and not args.no_bento:
        on_label, off_label = (f"bento, {m}" for m in (log_mode.ON, log_mode.OFF))
        print()
        print("| conns | log on / off: wrk req/s | client p50 / p95 / p99 | wrk p99 |")
        print("|---|---|---|---|")
        for n in conns:
            r, o = summary[(on_label, n)], summary[(off_label, n)]
            print(
                f"| {n} | {r['rps'] / o['rps']:.2f} | {r['p50'] / o['p50']:.2f} / "
                f"{r['p95'] / o['p95']:.2f} / {r['p99'] / o['p99']:.2f} | "
                f"{r['wp99'] / o['wp99']:.2f} |"
            )
        print(
            f"inference log of the log-on server: {written['logged']:,.0f} rows logged, "
            f"{written['dropped']:,.0f} dropped, {written['queued']:,.0f} queued; "
            f"{written['rows_in_postgres']:,.0f} rows in Postgres"
        )
    if not extra:
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    print()
    print(
        "| server | /embed 64 new texts p50 / p95 ms | same 64 again p50 / p95 ms "
        "| 16 clients x 8 new texts: texts/s, p95 ms |"
    )
    print("|---|---|---|---|")
    for key, v in extra.items():
        e64, rep, e16 = v["embed_64"], v["embed_64_repeated"], v["embed_16x8"]
        print(
            f"| {key} | {e64['p50']:.1f} / {e64['p95']:.1f} | {rep['p50']:.1f} / {rep['p95']:.1f} "
            f"| {e16['texts_per_s']:,.0f}, {e16['p95_ms']:.0f} |"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
