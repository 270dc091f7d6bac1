"""The abuse limits over HTTP, against a real `bentoml serve` (tests/limits_probe.py, wired at
its edge like the served Bento): past the per-worker concurrency cap a request gets 429 with
Retry-After at once, and with ML_SERVING_REQUIRE_KEY=1 every route but the probes needs a key.
tests/test_serving/ checks the same on the served Bento itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from ml_assets.bundle.serving_process import start_server
from tests.helpers import at_once

REPO = Path(__file__).resolve().parents[1]
CLIENT_KEY, ADMIN_KEY = "probe-client-key", "probe-admin-key"


def _serve(tmp_path: Path, **env: str):
    proc = start_server(
        "tests.limits_probe:LimitsProbe",
        bentoml_home=tmp_path / "bentoml",
        env={"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env},
        cwd=REPO,
    )
    proc.wait_ready(timeout_s=120)
    return proc


def _count(c: httpx.Client, code: str, headers: dict | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(c.get("/metrics", headers=headers).text)
    return sum(
        s.value
        for f in families
        for s in f.samples
        if s.name == "bentoml_service_request_total"
        and s.labels["endpoint"] == "/hold"
        and s.labels["http_response_code"] == code
    )


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    with _serve(tmp_path_factory.mktemp("capped"), ML_SERVING_MAX_CONCURRENCY="3") as proc:
        yield proc


def test_past_the_cap_requests_get_429_with_retry_after_at_once(capped):
    clients, hold = 8, 1.5
    results: list[tuple[int, str | None, float, dict]] = []

    def call(_: int) -> None:
        with httpx.Client(base_url=capped.url, timeout=30) as c:
            t0 = time.monotonic()
            r = c.post("/hold", json={"seconds": hold})
            results.append(
                (r.status_code, r.headers.get("retry-after"), time.monotonic() - t0, r.json())
            )

    with httpx.Client(base_url=capped.url, timeout=30) as c:
        before = _count(c, "429")
        at_once(clients, call, timeout_s=60)
        assert len(results) == clients, "every request was answered"
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        assert len(served) == 3 and len(refused) == clients - 3, results
        for _, retry, seconds, body in refused:
            assert retry == "1" and seconds < hold / 2, (retry, seconds)
            assert "ML_SERVING_MAX_CONCURRENCY" in body["error"]
        assert _count(c, "429") - before == len(refused)  # refused requests are counted
        # The probes are not capped, and the slots come back.
        assert c.get("/readyz").status_code == 200
        assert c.post("/hold", json={"seconds": 0}).status_code == 200


def test_validation_still_answers_400_with_a_message(capped):
    r = httpx.post(f"{capped.url}/hold", json={"seconds": 99}, timeout=30)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["seconds"]


def test_with_require_key_every_route_but_the_probes_needs_a_key(tmp_path):
    env = {
        "ML_SERVING_REQUIRE_KEY": "1",
        "ML_SERVING_CLIENT_KEY": CLIENT_KEY,
        "ML_SERVING_API_KEY": ADMIN_KEY,
    }
    with _serve(tmp_path, **env) as proc, httpx.Client(base_url=proc.url, timeout=30) as c:
        assert c.get("/livez").status_code == 200 and c.get("/readyz").status_code == 200
        for method, path, body in [
            ("POST", "/hold", {"seconds": 0}),
            ("GET", "/metrics", None),
            ("GET", "/docs.json", None),
            ("GET", "/no-such-route", None),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 401 and "X-API-Key" in r.json()["error"], (path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            r = c.request(method, path, json=body, headers={"X-API-Key": "wrong"})
            assert r.status_code == 403 and r.json() == {"error": "wrong API key"}, path
            for good in ({"X-API-Key": CLIENT_KEY}, {"Authorization": f"Bearer {ADMIN_KEY}"}):
                r = c.request(method, path, json=body, headers=good)
                assert r.status_code == (404 if path == "/no-such-route" else 200), (path, r)
        assert _count(c, "401", {"X-API-Key": CLIENT_KEY}) == 1


def test_require_key_without_a_client_key_does_not_start(tmp_path):
    with pytest.raises(RuntimeError, match="ML_SERVING_CLIENT_KEY"):
        _serve(tmp_path, ML_SERVING_REQUIRE_KEY="1")
