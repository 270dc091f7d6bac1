"""The inference log behind a real `bentoml serve` (tests/inference_log_probe.py): each
scoring response carries its X-Request-ID, the rows logged in Postgres are the ones sent (an
async API and a sync one, which BentoML runs in its thread pool), sensitive features are
hashed, and /metrics counts what was logged."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from ml_assets.bundle.serving_process import start_server
from ml_assets.monitoring.inference_tables import log_table
from tests.conftest import fresh_vector_database

REPO = Path(__file__).resolve().parents[1]


def _logged(c: httpx.Client) -> float:
    families = text_string_to_metric_families(c.get("/metrics").text)
    return sum(
        s.value
        for f in families
        for s in f.samples
        if s.name == "ml_assets_inference_log_records_total" and s.labels["outcome"] == "logged"
    )


def test_served_requests_are_logged_with_their_ids_and_sensitive_features_hashed(
    pg_dsn: str, tmp_path: Path
):
    dsn = fresh_vector_database(pg_dsn, "inference_log_http")
    env = {
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "ML_INFERENCE_LOG_DSN": dsn,
    }
    proc = start_server(
        "tests.inference_log_probe:InferenceLogProbe",
        bentoml_home=tmp_path / "bentoml",
        env=env,
        cwd=REPO,
    )
    sent: dict[str, list[dict]] = {}
    with proc:
        proc.wait_ready(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            for i in range(4):
                row = {"amount": 100.0 + i, "merchant": "a", "home_km": 2.5 * i}
                r = c.post("/v1/models/tiny/predict", json={"row": row})
                assert r.status_code == 200, r.text
                sent[r.headers["x-request-id"]] = [row]
                rows = [{"amount": 7.0 * j, "merchant": "b", "home_km": 1.0} for j in range(3)]
                r = c.post("/v1/models/tiny/predict/batch", json={"rows": rows})
                assert r.status_code == 200, r.text
                sent[r.headers["x-request-id"]] = rows
            assert c.get("/livez").headers.get("x-request-id") is None  # scoring routes only
            deadline = time.monotonic() + 20
            while _logged(c) < 16 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _logged(c) == 16
    assert len(sent) == 8
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            sql.SQL("SELECT request_id, row_index, features, output FROM {}").format(
                sql.Identifier(log_table("tiny"))
            )
        ).fetchall()
    assert {(r, i) for r, i, _, _ in got} == {
        (r, i) for r, rows in sent.items() for i in range(len(rows))
    }
    for request_id, index, features, output in got:
        row = sent[request_id][index]
        assert features["amount"] == row["amount"] and output == row["amount"] / 1e6
        assert (
            features["home_km"] == hashlib.sha256(json.dumps(row["home_km"]).encode()).hexdigest()
        )
