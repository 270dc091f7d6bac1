"""Every declared lineage is served: the curves lineage gated, bundled and served, and a new
lineage that comes and goes on the live endpoint."""

from __future__ import annotations

import json
import threading
import time

import httpx
from dagster import (
    AssetKey,
    materialize,
)

from ml_assets.bundle.assets import (
    serving_bundle,
    serving_bundle_smoke,
    serving_deployment,
)
from ml_assets.bundle.serving_process import start_server
from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from tests.helpers import (
    CATALOG,
    assets_of_lineage,
    materialize_shipped_curves,
)
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    API_KEY,
    _alias,
    _hammer,
    _promote,
    _sensor_tick,
    _served,
)

# ---- every declared lineage is served ---------------------------------------------------------

CURVE_ROW = {
    "commodity": "power",
    "season": "winter",
    "month": 1,
    "tenor_months": 3,
    "days_to_expiry": 80,
    "volatility": 0.45,
    "settle_lag1": 71.25,
    "settle_lag5_mean": 70.9,
    "settle_lag20_mean": 69.4,
}
CURVES = "curve-forecaster"


def test_a_declared_lineage_is_gated_bundled_and_served(platform, tmp_path):
    """The curves lineage (YAML only, ml_assets/lineages/curves): materialize, promote through
    the gate, bundle, and call its generated route over HTTP."""
    run = materialize_shipped_curves(platform["resources"], platform["instance"])
    assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
    client = platform["client"]
    version = max(int(v.version) for v in client.search_model_versions(f"name='{CURVES}'"))
    event = _promote(platform, CURVES, str(version), reason="first curves model")
    try:
        _check_curves_served(platform, version, event)
    finally:
        # The registry is shared by the session; the records of this version are in this
        # module's instance only, so another module's bundle would (rightly) refuse it.
        client.delete_registered_model_alias(CURVES, PRODUCTION_ALIAS)


def _check_curves_served(platform, version: int, event: dict) -> None:
    assert event["model"] == CURVES and {g["name"] for g in event["gates"]} >= {
        "onnx_export",
        "export_validation",
        "expectations",
    }
    # The production fraud model and embedder must be bundled too: whatever is production now.
    bundle = materialize(
        [serving_bundle, serving_bundle_smoke],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert bundle.success
    manifest = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
    entry = manifest["models"]["curves"]
    assert entry["registered_model"] == CURVES and entry["info"]["lineage"]["task"] == "regression"
    assert {v["check"] for v in entry["gate"]["verdicts"]} == {
        "expectations",
        "quality_delta",
        "output_parity",
        "latency",
    }
    tag = _ref(platform["root"], "serving_bundle").extra["bento_tag"]
    with start_server(tag, bentoml_home=platform["home"], workers=1) as proc:
        proc.wait_ready(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            r = c.post("/v1/models/curves/predict", json={"features": CURVE_ROW})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_version"] == f"{CURVES}@{version}" and body["task"] == "regression"
            assert 0 < body["prediction"] < 2000
            rows = [dict(CURVE_ROW, settle_lag1=p) for p in (60.0, 70.0, 80.0)]
            r = c.post("/v1/models/curves/predict/batch", json={"rows": rows})
            assert r.status_code == 200 and r.json()["count"] == 3, r.text
            # The route's request model is generated from the lineage's declared schema.
            for bad in (
                {**CURVE_ROW, "commodity": "uranium"},  # unknown category
                {**CURVE_ROW, "month": 13},  # out of range
                {**CURVE_ROW, "volatility": "high"},  # wrong type
                {**CURVE_ROW, "extra": 1},  # unknown field
                {k: v for k, v in CURVE_ROW.items() if k != "tenor_months"},
            ):
                r = c.post("/v1/models/curves/predict", json={"features": bad})
                assert r.status_code == 400 and r.json()["error"], (bad, r.status_code, r.text)
            assert c.post("/v1/models/curves/predict/batch", json={"rows": []}).status_code == 400
            served = c.get("/models").json()["models"]
            assert served["curves"]["registered_model"] == CURVES
            assert served["curves"]["gate"]["approved"]
            paths = c.get("/docs.json").json()["paths"]
            assert "/v1/models/curves/predict" in paths and "/v1/score" in paths


def _deploy_under_load(platform, server) -> tuple[list, list]:
    """serving_deployment of the newest bundle (the sensor's run's last step) while 4 clients
    score at /v1/score: (answers seen, failures)."""
    stop, seen, failures = threading.Event(), [], []
    threads = [
        threading.Thread(target=_hammer, args=(server.url, stop, seen, failures)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        run = materialize(
            [serving_bundle, serving_deployment],
            selection=[serving_deployment],
            resources=platform["resources"],
            instance=platform["instance"],
        )
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert run.success
    return seen, failures


def _bundle(platform, smoke: bool = True) -> dict:
    checks = [serving_bundle_smoke] if smoke else []
    result = materialize(
        [serving_bundle, *checks], resources=platform["resources"], instance=platform["instance"]
    )
    assert result.success
    if smoke:
        (check,) = result.get_asset_check_evaluations()
        assert check.passed, check.metadata["results"].value
    return json.loads(_ref(platform["root"], "serving_bundle").read_verified())


def test_lineages_come_and_go_on_the_live_endpoint(server, platform, monkeypatch):
    """A new lineage (YAML and a ~20-line train function in a temporary defs folder, no platform
    change) materialized and promoted while the endpoint runs: the sensor's run serves it on
    the running server, with no failed request at /v1/score. Then it loses its production
    version (declared, not validated: 503 with the reason), then its declaration (404); the
    other models keep answering; its MLflow versions stay."""

    from ml_assets.components.defs_folder import catalog_of
    from tests.test_components import loans_tree

    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    cursor = _sensor_tick(platform, None).cursor
    client = platform["client"]
    with loans_tree() as tree:
        (loans,) = catalog_of(tree).lineages
        defs = tree.build_defs()
        run = materialize(
            assets_of_lineage(defs, "loans"),
            resources=platform["resources"],
            instance=platform["instance"],
        )
    assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
    version = max(int(v.version) for v in client.search_model_versions("name='loan-default'"))
    risky = {"income_k": 30.0, "debt_ratio": 2.5, "age": 25, "term": "60m"}
    safe = {"income_k": 200.0, "debt_ratio": 0.1, "age": 50, "term": "36m"}
    # The code location with the new defs folder: the shipped declarations and the loans one.
    platform["resources"]["catalog"] = Catalog.of((*CATALOG.lineages, loans), CATALOG.index)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            # Before: the running Bento has no such model.
            r = c.post("/v1/models/loans/predict", json={"features": risky})
            assert r.status_code == 404 and "model 'loans' is not served" in r.text, r.text
            _promote(platform, "loan-default", str(version), reason="first loans model")
            tick = _sensor_tick(platform, cursor)
            assert f"loan-default@{version}" in [r.run_key for r in tick.run_requests]
            manifest = _bundle(platform)
            assert manifest["lineages"]["loans"]["served"] and "loans" in manifest["models"]
            seen, failures = _deploy_under_load(platform, server)
            assert not failures, failures[:5]
            assert seen and len({v for _, v in seen}) == 1  # the fraud model did not change
            print(f"\nreload adding a lineage: {len(seen)} requests at /v1/score, 0 failed")
            assert _served(server.url)["loans"][0] == f"loan-default@{version}"
            answers = [
                c.post("/v1/models/loans/predict", json={"features": row}) for row in (risky, safe)
            ]
            assert [a.status_code for a in answers] == [200, 200], answers[0].text
            p_risky, p_safe = (a.json()["prediction"] for a in answers)
            assert 0 <= p_safe < p_risky <= 1
            assert answers[0].json()["model_version"] == f"loan-default@{version}"
            bad = c.post("/v1/models/loans/predict", json={"features": {**risky, "term": "7y"}})
            assert bad.status_code == 400 and "term" in bad.text, bad.text
            rows = c.post("/v1/models/loans/predict/batch", json={"rows": [risky, safe, risky]})
            assert rows.status_code == 200 and rows.json()["count"] == 3, rows.text
            served = c.get("/models").json()["models"]["loans"]
            assert served["gate"]["approved"] and served["registered_model"] == "loan-default"
            assert "/v1/models/loans/predict" in c.get("/docs.json").json()["paths"]

            # Declared but not validated: no production version. The smoke check expects 503.
            client.delete_registered_model_alias("loan-default", PRODUCTION_ALIAS)
            manifest = _bundle(platform)
            assert not manifest["lineages"]["loans"]["served"] and "loans" not in manifest["models"]
            _, failures = _deploy_under_load(platform, server)
            assert not failures, failures[:5]
            waiting = c.post("/v1/models/loans/predict", json={"features": risky})
            assert waiting.status_code == 503, waiting.text
            assert waiting.headers["retry-after"] and "declared but not served" in waiting.text
            assert "ml-assets promote loan-default" in waiting.json()["error"]

            # Removed: its declaration is gone (the defs folder without it).
            platform["resources"]["catalog"] = CATALOG
            manifest = _bundle(platform, smoke=False)
            assert "loans" not in manifest["lineages"] and "loans" not in manifest["models"]
            _, failures = _deploy_under_load(platform, server)
            assert not failures, failures[:5]
            gone = c.post("/v1/models/loans/predict", json={"features": risky})
            assert gone.status_code == 404, gone.text
            names = ", ".join(sorted(manifest["lineages"]))
            assert gone.json() == {
                "error": f"model 'loans' is not served (declared lineages: {names})"
            }
            assert "/v1/models/loans/predict" not in c.get("/docs.json").json()["paths"]
            fraud = c.post("/v1/models/fraud/predict", json={"features": SMOKE_TRANSACTION})
            assert fraud.status_code == 200, fraud.text
            assert "loans" not in c.get("/models").json()["models"]
        # Its registry versions and its Dagster history stay.
        assert str(client.get_model_version("loan-default", str(version)).version) == str(version)
        assert platform["instance"].get_latest_materialization_event(AssetKey(["loans", "onnx"]))
    finally:
        platform["resources"]["catalog"] = CATALOG
        if _alias(platform, "loan-default"):
            client.delete_registered_model_alias("loan-default", PRODUCTION_ALIAS)
