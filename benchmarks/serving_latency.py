"""Serving benchmark: the served Bento vs a minimal FastAPI + ONNX Runtime app, same scoring,
same machine, one run. Prints throughput and two kinds of percentile per point:

- "client p50/p95/p99": real per-request times measured by a closed-loop client (N threads,
  one keep-alive connection each, http.client), i.e. what each request took;
- "wrk p50/p99": what wrk prints (wrk corrects for coordinated omission, so a server stall
  shows up as the latency a client sending at a steady rate would see).

Needs a built bundle (materialize serving_bundle, e.g. via `ml-assets up`) and `wrk` on PATH
(Debian: apt-get install wrk). Example:

    .venv/bin/python benchmarks/serving_latency.py --bentoml-home .ml-assets/bentoml \
        --tag ml-assets:<version> --duration 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_assets.assets.serving import SMOKE_TRANSACTION  # noqa: E402
from ml_assets.serving_process import ServerProcess, free_port, start_server  # noqa: E402

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
    host, port = url.removeprefix("http://").split(":")
    lat: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(conns)

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Content-Type": "application/json"}
        barrier.wait()
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/score", BODY, headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                ok = False
            lat[i].append(time.perf_counter() - t0)
            errors[i] += 0 if ok else 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    ms = np.array([x for xs in lat for x in xs]) * 1000
    return {
        "rps": len(ms) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "errors": sum(errors),
    }


def timed_posts(url: str, path: str, body: dict, n: int) -> dict:
    with httpx.Client(base_url=url, timeout=60) as c:
        c.post(path, json=body).raise_for_status()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.post(path, json=body).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(times), "p95": float(np.percentile(times, 95))}


def start_baseline(onnx: Path, workers: int, log: Path) -> ServerProcess:
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


STOCK = {  # BentoML's defaults: 1 worker, 1 thread, 60 s traffic timeout, access log on
    "ML_SERVING_WORKERS": "1",
    "ML_SERVING_THREADS": "1",
    "ML_SERVING_TIMEOUT_S": "60",
    "ML_SERVING_ACCESS_LOG": "1",
    "ML_SERVING_GC_TUNING": "0",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bentoml-home", required=True, type=Path)
    ap.add_argument("--tag", required=True, help="the Bento, e.g. ml-assets:<version>")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per point and method")
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--servers", default="fastapi,bentoml-stock,bentoml-tuned")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found on PATH (apt-get install wrk); it gives the CO-corrected figures")
        return 2
    home = args.bentoml_home.resolve()
    conns = [int(c) for c in args.conns.split(",")]
    onnx = fraud_model_file(home, args.tag)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"bento {args.tag}; fraud model {onnx.parent.name}; {args.duration:.0f} s per point")
    rows = []
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(WRK_LUA % BODY)
        for name in args.servers.split(","):
            log = Path(tmp) / f"{name}.log"
            if name == "fastapi":
                server = start_baseline(onnx, args.workers, log)
                label = f"FastAPI + uvicorn, {args.workers} workers"
            else:
                env = dict(STOCK) if name == "bentoml-stock" else {}
                workers = 1 if name == "bentoml-stock" else args.workers
                server = start_server(
                    args.tag, bentoml_home=home, workers=workers, env=env, log_path=log
                )
                server.wait_ready()
                label = f"{name}, {workers} worker(s)"
            with server:
                for n in conns:
                    wrk(server.url, n, 2, lua)  # warm-up
                    w = wrk(server.url, n, args.duration, lua)
                    c = closed_loop(server.url, n, args.duration)
                    rows.append((label, n, w, c))
                    print(
                        f"{label:38s} conns {n:3d}  wrk {w['rps']:8,.0f} req/s "
                        f"(errors {w['errors'] + w['non2xx']})  client {c['rps']:7,.0f} req/s  "
                        f"client p50/p95/p99 {c['p50']:6.2f} / {c['p95']:6.2f} / {c['p99']:6.2f} ms"
                        f"  wrk p50/p99 {w['p50']:7.2f} / {w['p99']:7.2f} ms",
                        flush=True,
                    )
                if name == "bentoml-tuned":
                    batch = {"transactions": [SMOKE_TRANSACTION] * 1000}
                    texts = [f"front-month power baseload contract number {i}" for i in range(64)]
                    extra["batch_1000"] = timed_posts(server.url, "/v1/score/batch", batch, 20)
                    extra["embed_64"] = timed_posts(server.url, "/embed", {"texts": texts}, 20)
    print()
    print(
        "| server | conns | wrk req/s | client req/s | client p50 / p95 / p99 ms "
        "| wrk p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for label, n, w, c in rows:
        print(
            f"| {label} | {n} | {w['rps']:,.0f} | {c['rps']:,.0f} | "
            f"{c['p50']:.2f} / {c['p95']:.2f} / {c['p99']:.2f} | {w['p50']:.2f} / {w['p99']:.2f} |"
        )
    base = {n: w["rps"] for label, n, w, _ in rows if label.startswith("FastAPI")}
    for label, n, w, _ in rows:
        if label.startswith("bentoml") and n in base:
            print(f"ratio {label} / FastAPI at {n} conns (wrk req/s): {w['rps'] / base[n]:.2f}")
    for key, v in extra.items():
        print(f"{key}: p50 {v['p50']:.1f} ms, p95 {v['p95']:.1f} ms (client-measured, 20 requests)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
