"""`serving_latency.py --log-on-off`: the same Bento served twice, the inference log off and on
at sample rate 1.0 (every scoring request logged), and what the log-on server really wrote."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from ml_assets.local.stack import start_embedded_postgres
from ml_assets.monitoring.inference_tables import log_table
from ml_assets.platform.environment import environment_snapshot

OFF = "log off"
ON = "log on (sample 1.0)"


def cpu_line() -> str:
    """The CPU these figures are of (its model name, as lscpu shows it), its CPUs and SIMD."""
    env = environment_snapshot()
    simd = " ".join(env["simd"]) or "no AVX"  # type: ignore[arg-type]
    return f"cpu: {env['cpu']}, {env['cpu_count']} CPUs ({simd})"


def log_dsn(given: str | None, tmp: Path) -> str:
    """The log's Postgres: `given`, or an embedded one in `tmp`, stopped when this exits."""
    if given:
        return given
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp / "run"))
    (tmp / "run").mkdir(mode=0o700, exist_ok=True)
    return start_embedded_postgres(tmp / "pg", stop_on_exit=True)


def envs(dsn: str) -> dict[str, dict[str, str]]:
    """The environment of each log mode's server."""
    return {
        OFF: {"ML_INFERENCE_LOG": "0"},
        ON: {
            "ML_INFERENCE_LOG": "1",
            "ML_INFERENCE_LOG_DSN": dsn,
            "ML_INFERENCE_LOG_SAMPLE_RATE": "1.0",
        },
    }


def written(url: str, dsn: str, lineage: str = "fraud") -> dict[str, float]:
    """The log-on server's own counts (/metrics: logged, dropped, queued) and the rows that
    landed in Postgres."""
    counts = {"logged": 0.0, "dropped": 0.0, "queued": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("ml_assets_inference_log_records_total{"):
            for outcome in ("logged", "dropped"):
                if f'outcome="{outcome}"' in line:
                    counts[outcome] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ml_assets_inference_log_queued"):
            counts["queued"] += float(line.rsplit(" ", 1)[1])
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (log_table(lineage),)).fetchone()[0]
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(log_table(lineage)))
        counts["rows_in_postgres"] = float(conn.execute(query).fetchone()[0]) if exists else 0.0
    return counts
