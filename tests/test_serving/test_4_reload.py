"""Promotion → sensor → bundle → /reload under load, then rollback; a tampered model keeps the
server not ready; the promote job and a serving run switch the endpoint."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
from dagster import materialize

from ml_assets.bundle.assets import (
    serving_bundle,
    serving_bundle_smoke,
)
from ml_assets.bundle.serving_process import start_server
from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION
from ml_assets.platform import promotion
from tests.helpers import RAW
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    API_KEY,
    EMBEDDER,
    FRAUD,
    _alias,
    _hammer,
    _promote,
    _sensor_tick,
)


def test_promote_sensor_bundle_reload_under_load_then_rollback(server, platform):
    a, b = f"{FRAUD}@{platform['fraud_a']}", f"{FRAUD}@{platform['fraud_b']}"
    # Seed differences move PR-AUC by more than the default margin on 20k rows.
    _promote(platform, FRAUD, platform["fraud_b"], reason="retrained", margin=0.5)
    tick = _sensor_tick(platform, platform["sensor_cursor"])
    assert [r.run_key for r in tick.run_requests] == [f"{FRAUD}@{platform['fraud_b']}"]
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        # Not bundled yet: the reload refuses and the old version keeps serving.
        r = c.post("/reload", json={}, headers=headers)
        assert r.status_code == 409 and "not in the BentoML model store" in r.text
        result = materialize(
            [serving_bundle, serving_bundle_smoke],
            resources=platform["resources"],
            instance=platform["instance"],
        )
        assert result.success
        stop, seen, failures = threading.Event(), [], []
        threads = [
            threading.Thread(target=_hammer, args=(server.url, stop, seen, failures))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        start = time.monotonic()
        r = c.post("/reload", json={}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["changed"] and r.json()["models"]["fraud"]["version"] == platform["fraud_b"]
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures[:5]
        after = [v for ts, v in seen if ts > start + 1.5]
        assert after and set(after) == {b}, "every worker serves the new version"
        assert {v for ts, v in seen if ts < start} == {a}
        first_new = min(ts for ts, v in seen if v == b) - start
        last_old = max((ts for ts, v in seen if v == a), default=start) - start
        print(
            f"\nreload: {len(seen)} requests, 0 failed; first answer from {b} "
            f"{first_new:.3f} s after the reload call, last from {a} at {last_old:.3f} s"
        )
        assert first_new < 2.0
        # Rollback: promote the earlier version (its bundle is still in the model store).
        _promote(platform, FRAUD, platform["fraud_a"], reason="rollback drill", rollback=True)
        r = c.post("/reload", json={}, headers=headers)
        assert (
            r.status_code == 200 and r.json()["models"]["fraud"]["version"] == platform["fraud_a"]
        )
        time.sleep(1.0)
        versions = {
            c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION}).json()["model_version"]
            for _ in range(20)
        }
        assert versions == {a}
    kinds = [e["kind"] for e in promotion.history(platform["events_dsn"], FRAUD)]
    assert kinds[-2:] == ["promotion", "rollback"]


def test_tampered_model_keeps_the_server_not_ready(platform, tmp_path):
    home = tmp_path / "bentoml"
    shutil.copytree(platform["home"], home, symlinks=True)
    # The first bundle (platform["bento_tag"]) pins fraud version A.
    model_dir = next((home / "models" / FRAUD).glob(f"v{platform['fraud_a']}-*"))
    target = model_dir / "model.onnx"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    proc = start_server(platform["bento_tag"], bentoml_home=home, workers=1)
    with proc:
        proc.wait_live(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            time.sleep(1.0)
            assert c.get("/readyz").status_code == 503
            r = c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION})
            assert r.status_code == 503
            # BentoML masks 5xx bodies; /models and the log say which file failed.
            state = c.get("/models").json()
            assert not state["ready"] and str(target) in state["error"]
        assert str(target) in proc.log_tail(200)


def test_promote_job_then_serving_run_switches_the_endpoint(server, platform, monkeypatch):
    """Promotion (the Dagster job) → sensor → serving run → the endpoint answers the version."""
    from ml_assets.bundle.assets import serving_deployment
    from ml_assets.bundle.promotion_job import promote_model_job

    b = f"{FRAUD}@{platform['fraud_b']}"
    job = promote_model_job.execute_in_process(
        run_config={
            "ops": {
                "promote_model": {
                    "config": {
                        "model": FRAUD,
                        "version": platform["fraud_b"],
                        "reason": "re-promote after the drill",
                        "margin": 0.5,
                    }
                }
            }
        },
        resources={k: platform["resources"][k] for k in ("mlflow", "postgres", "catalog")},
        instance=platform["instance"],
    )
    assert job.success
    tick = _sensor_tick(platform, platform["sensor_cursor"])
    assert [r.run_key for r in tick.run_requests] == [b]
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    run = materialize(
        [serving_bundle, serving_bundle_smoke, serving_deployment],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert run.success
    md = {
        m.materialization.asset_key.to_user_string(): m.materialization.metadata
        for m in run.get_asset_materialization_events()
    }
    assert md["serving_deployment"]["served"].value.startswith(
        f"{EMBEDDER}@{platform['embedder']},{b}"
    )
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(10):
            r = c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION})
            assert r.json()["model_version"] == b
        provenance = c.get("/models").json()["models"]["fraud"]["provenance"]
        assert provenance[0]["asset"] == RAW
        # The card served after the reload is this bundle's, not the one the model store kept
        # from the version's first bundle (that one predates the rollback and re-promotion).
        pinned = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
        pinned = pinned["models"]["fraud"]["info"]
        for _ in range(6):  # both workers
            r = c.get("/v1/models/fraud/card", headers={"accept": "application/json"})
            assert r.status_code == 200 and r.headers["x-card-sha256"] == pinned["card_sha256"]
        history = r.json()["card"]["promotion_history"]
        assert history[-1]["reason"] == "re-promote after the drill", history
        assert [e["kind"] for e in history][-2:] == ["rollback", "promotion"], history
    # A gate rejection through the job fails the run and changes nothing.
    rejected = promote_model_job.execute_in_process(
        run_config={
            "ops": {
                "promote_model": {
                    "config": {"model": FRAUD, "version": "9999", "reason": "no such version"}
                }
            }
        },
        resources={k: platform["resources"][k] for k in ("mlflow", "postgres", "catalog")},
        instance=platform["instance"],
        raise_on_error=False,
    )
    assert not rejected.success and _alias(platform, FRAUD) == platform["fraud_b"]
