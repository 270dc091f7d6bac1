"""The served search is the validated one; the service refuses a manifest without passed verdicts,
and says why when search is off."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

import httpx
import jsonschema
from dagster import build_asset_check_context

from ml_assets.bundle.assets import serving_bundle_smoke
from ml_assets.bundle.serving_process import start_server
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from ml_assets.resources.bento import BentoResource
from ml_assets.search.corpus import load_queries
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    API_KEY,
    EMBEDDER,
    FRAUD,
    _declared_schema,
)


def test_served_search_is_the_validated_search(server, platform):
    report = json.loads(_ref(platform["root"], "search_quality_report").read_verified())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        search = c.get("/models").json()["search"]
        assert search["enabled"] and search["config"] == report["search_config"]
        queries = {q.id: q for q in load_queries()}
        mismatches = []
        for qid, want in report["hybrid_rankings"].items():
            q = queries[qid]
            r = c.post("/search", json={"query": q.query, "tenant_id": q.tenant_id, "limit": 10})
            assert r.status_code == 200, r.text
            got = [h["doc_id"] for h in r.json()["hits"]]
            if got != want:
                mismatches.append((qid, got[:3], want[:3]))
    assert not mismatches, mismatches[:5]


def _alias(client, model: str) -> str:
    return client.get_model_version_by_alias(model, PRODUCTION_ALIAS).version


def test_service_refuses_a_manifest_without_passed_verdicts(platform, tmp_path):
    home = tmp_path / "bentoml"
    shutil.copytree(platform["home"], home, symlinks=True)
    bento = next((home / "bentos" / "ml-assets").glob("*/src/serving/bundle.json"))
    bundle = json.loads(bento.read_text())
    prod = bundle["models"]["fraud"]
    # At /reload: the production model's store manifest lost its verdicts.
    store_manifest = next((home / "models" / FRAUD).glob(f"v{prod['version']}-*/ml_model.json"))
    entry = json.loads(store_manifest.read_text())
    entry["gate"] = None
    store_manifest.write_text(json.dumps(entry))
    tag = f"ml-assets:{bento.parents[2].name}"
    env = {"MLFLOW_TRACKING_URI": platform["mlflow_url"], "ML_SERVING_API_KEY": API_KEY}
    client = platform["client"]
    # The glob above may pick an older Bento than the one the package's server serves: move the
    # aliases to its versions for this test only, and put them back, so the modules after this
    # one see the registry as the platform left it.
    before = {m: _alias(client, m) for m in (FRAUD, EMBEDDER)}
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, prod["version"])
    client.set_registered_model_alias(
        EMBEDDER, PRODUCTION_ALIAS, bundle["models"]["embedder"]["version"]
    )
    try:
        with start_server(tag, bentoml_home=home, workers=1, env=env) as proc:
            proc.wait_ready(timeout_s=120)
            with httpx.Client(base_url=proc.url, timeout=30) as c:
                c.get("/models")
                r = c.post("/reload", json={}, headers={"X-API-Key": API_KEY})
                assert r.status_code == 409 and "no passed verdict" in r.text, r.text
                assert c.get("/readyz").status_code == 200  # still serving the validated models
    finally:
        for model, version in before.items():
            client.set_registered_model_alias(model, PRODUCTION_ALIAS, version)
    # At load: the Bento's own manifest lost its verdicts.
    prod["gate"]["verdicts"] = [v for v in prod["gate"]["verdicts"] if v["check"] != "latency"]
    bento.write_text(json.dumps(bundle))
    with start_server(tag, bentoml_home=home, workers=1) as proc:
        proc.wait_live(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            time.sleep(1.0)
            assert c.get("/readyz").status_code == 503
            assert "no passed verdict for latency" in c.get("/models").json()["error"]
        assert "no passed verdict for latency" in proc.log_tail(200)
    # The smoke check of that Bento fails as soon as the service logs its refusal, quoting it
    # (not after its 120 s readiness wait).
    ref = dataclasses.replace(
        _ref(platform["root"], "serving_bundle"),
        extra={**_ref(platform["root"], "serving_bundle").extra, "bento_tag": tag},
    )
    start = time.monotonic()
    result = serving_bundle_smoke(
        build_asset_check_context(), serving_bundle=ref, bento=BentoResource(home=str(home))
    )
    seconds = time.monotonic() - start
    assert not result.passed and "no passed verdict for latency" in result.description
    assert "refused its models" in result.description, result.description
    print(f"\nsmoke of a refused bundle failed in {seconds:.1f} s")
    assert seconds < 15, seconds


def test_search_off_is_a_503_with_the_reason_models_shows(platform, vector_dsn, tmp_path):
    """A bundle built before any search report passed (issue 27): /search says why, in the
    declared error body, with Retry-After, and logs no traceback."""
    home = tmp_path / "bentoml"
    shutil.copytree(platform["home"], home, symlinks=True)
    bento = next((home / "bentos" / "ml-assets").glob("*/src/serving/bundle.json"))
    bundle = json.loads(bento.read_text())
    reason = "no search_quality_report for embedder e1fccb834c39: materialize embedding_index"
    bundle["search"] = {"enabled": False, "reason": reason}
    bento.write_text(json.dumps(bundle))
    env = {"ML_VECTOR_PG_DSN": vector_dsn}
    with start_server(f"ml-assets:{bento.parents[2].name}", bentoml_home=home, env=env) as proc:
        proc.wait_ready(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            shown = c.get("/models").json()["search"]
            r = c.post("/search", json={"query": "power", "tenant_id": "helios-trading"})
            doc = c.get("/docs.json").json()
        log = proc.log_tail(400)
    assert shown == {"enabled": False, "reason": reason}
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert r.json() == {"error": f"search is not served: {reason}"}
    jsonschema.validate(r.json(), _declared_schema(doc, "/search", 503))
    assert "Traceback" not in log and "unexpected error" not in r.text
