"""Promotion gate → model_promotion_sensor → serving_bundle (a real Bento) → `bentoml serve`
over HTTP: endpoints, bad input, tampered files, reload under load, rollback."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bentoml
import httpx
import jsonschema
import numpy as np
import psycopg
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    MetadataValue,
    build_asset_check_context,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ml_assets.assets.serving import (
    serving_bundle,
    serving_bundle_smoke,
    serving_deployment,
)
from ml_assets.core import events, promotion
from ml_assets.core.artifacts import ArtifactRef
from ml_assets.core.catalog import Catalog
from ml_assets.core.corpus import default_corpus_path, load_corpus, load_queries
from ml_assets.core.hashing import canonical_json, sha256_bytes
from ml_assets.core.serving_bundle import BUNDLE_SCHEMA, PRODUCTION_ALIAS
from ml_assets.dagster_records import DATA_VERSION_TAG, DagsterRecords
from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION
from ml_assets.resources import MlflowResource
from ml_assets.resources.bento import BentoResource
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import latest_ref
from ml_assets.sensors.promotion import promotion_sensor
from ml_assets.serving_process import free_port, start_server
from tests.conftest import TEST_ROWS
from tests.helpers import (
    CATALOG,
    EMBEDDER_MODEL,
    FRAUD_ASSETS,
    FRAUD_MODEL,
    MODEL,
    ONNX,
    RAW,
    REPORT,
    assets_of_lineage,
    dagster_webserver,
    failure_text,
    fraud_asset,
    op,
    run_config,
    wait_until_up,
)

RETRAIN = [fraud_asset("model"), fraud_asset("onnx"), fraud_asset("export_validation_report")]

API_KEY = "test-reload-key"
FRAUD, EMBEDDER = FRAUD_MODEL, EMBEDDER_MODEL


def _ref(root: Path, asset: str) -> ArtifactRef:
    ref = latest_ref(root, asset)
    assert ref is not None, f"{asset} was not materialized"
    return ref


@pytest.fixture(scope="module")
def vector_dsn(search_state) -> str:
    """The module's copy of the session's search index (tests/conftest.py search_state)."""
    return search_state["dsn"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory, mlflow_resource: MlflowResource, vector_dsn: str, search_state):
    """Two fraud versions materialized here, on a copy of the session's search chain (embedder,
    index, report and their Dagster records); an MLflow server for /reload."""
    root = search_state["root"]
    home = tmp_path_factory.mktemp("bentoml_home")
    # The shipped catalog; a test that declares another lineage swaps it here for its span.
    resources = local_resources(root, mlflow_resource, vector_dsn, home, CATALOG)
    instance = search_state["instance"]
    first = materialize(
        FRAUD_ASSETS,
        resources=resources,
        instance=instance,
        run_config=run_config(TEST_ROWS),
    )
    assert first.success
    fraud_a = _ref(root, MODEL).extra["model_version"]
    embedder = _ref(root, "embedding_model_onnx").extra["registered_versions"]["int8"]
    second = materialize(
        FRAUD_ASSETS,
        selection=RETRAIN,
        resources=resources,
        instance=instance,
        run_config={"ops": {op("model"): {"config": {"seed": 11, "params": {"max_iter": 120}}}}},
    )
    assert second.success
    fraud_b = _ref(root, MODEL).extra["model_version"]
    assert fraud_a != fraud_b
    port = free_port()
    logs = root / "mlflow.log"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            mlflow_resource.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(logs, "ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/health", server, logs, "mlflow server")
    yield {
        "root": root,
        "home": home,
        "resources": resources,
        "instance": instance,
        "client": mlflow_resource.client,
        "events_dsn": vector_dsn,
        "fraud_a": fraud_a,
        "fraud_b": fraud_b,
        "embedder": embedder,
        "mlflow_url": url,
    }
    server.terminate()
    server.wait(timeout=20)


def _promote(platform, name: str, version: str, **kw):
    return promotion.promote(
        platform["client"],
        platform["events_dsn"],
        name,
        version,
        catalog=platform["resources"]["catalog"],
        records=DagsterRecords(platform["instance"]),
        actor=kw.pop("actor", "pytest"),
        reason=kw.pop("reason", "test promotion"),
        **kw,
    )


def _alias(platform, name: str) -> str | None:
    try:
        return str(platform["client"].get_model_version_by_alias(name, PRODUCTION_ALIAS).version)
    except Exception:
        return None


def _events(platform) -> list[dict]:
    with psycopg.connect(platform["events_dsn"]) as conn:
        promotion.ensure_events_table(conn)
        return [r[0] for r in conn.execute("SELECT payload FROM ml_events.events ORDER BY 1")]


# ---- the gate -------------------------------------------------------------------------------


def test_gate_rejects_unvalidated_version_and_changes_nothing(platform):
    client = platform["client"]
    source = client.get_model_version(FRAUD, platform["fraud_a"])
    # A version registered straight through the MLflow client: no export, no validation.
    rogue = client.create_model_version(FRAUD, source.source, run_id=source.run_id)
    before_alias, before_events = _alias(platform, FRAUD), len(_events(platform))
    with pytest.raises(promotion.PromotionRejected) as err:
        _promote(platform, FRAUD, rogue.version)
    # Its run holds version A's validated bytes, but no export was recorded for this version.
    failed = {g.name for g in err.value.decision.gates if not g.passed}
    assert failed == {"onnx_export", "registry_hash"}, err.value.decision.table()
    assert "onnx_export" in str(err.value)
    assert _alias(platform, FRAUD) == before_alias
    assert len(_events(platform)) == before_events
    assert "promoted_by" not in client.get_model_version(FRAUD, rogue.version).tags


def _gate_rows(decision) -> dict[str, promotion.Gate]:
    return {g.name: g for g in decision.gates}


def _records_metric(platform, version: str) -> float:
    decision = promotion.evaluate(
        platform["client"],
        FRAUD,
        version,
        catalog=CATALOG,
        records=DagsterRecords(platform["instance"]),
    )
    assert decision.approved, decision.table()
    return decision.candidate_value


def test_gate_rejects_worse_than_champion(platform):
    # Both versions are validated; the champion comparison uses the records' PR-AUC.
    a, b = platform["fraud_a"], platform["fraud_b"]
    better, worse = (
        (a, b) if _records_metric(platform, a) > _records_metric(platform, b) else (b, a)
    )
    _promote(platform, FRAUD, better, reason="first champion")
    records = DagsterRecords(platform["instance"])
    decision = promotion.evaluate(
        platform["client"], FRAUD, worse, catalog=CATALOG, records=records, margin=0.0
    )
    assert [g.name for g in decision.gates if not g.passed] == ["champion"]
    with pytest.raises(promotion.PromotionRejected, match="champion"):
        _promote(platform, FRAUD, worse, margin=0.0)
    assert _alias(platform, FRAUD) == better
    with pytest.raises(ValueError, match="reason"):
        _promote(platform, FRAUD, better, reason=" ")
    with pytest.raises(ValueError, match="no version"):
        _promote(platform, FRAUD, "9999")
    if better != a:  # the rest of the module starts from version A in production
        _promote(platform, FRAUD, a, reason="module baseline", rollback=True)


def test_a_failing_report_beside_a_passing_one_keeps_the_version_admissible(platform):
    """A second report over the same bytes, from a run with a tightened threshold, fails its
    blocking check: the version stays admissible on the report that passed."""
    version = platform["fraud_b"]  # the newest export: what a report-only run reads
    before = promotion.evaluate(
        platform["client"],
        FRAUD,
        version,
        catalog=CATALOG,
        records=DagsterRecords(platform["instance"]),
    ).evidence.facts
    strict = materialize(
        FRAUD_ASSETS,
        selection=[fraud_asset("export_validation_report")],
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={"ops": {op("export_validation_report"): {"config": {"max_output_diff": 0.0}}}},
        raise_on_error=False,
    )
    parity = [c for c in strict.get_asset_check_evaluations() if c.check_name == "output_parity"]
    assert parity and not parity[0].passed and not strict.success
    newest = (
        platform["instance"]
        .fetch_materializations(AssetKey.from_user_string(REPORT), limit=1)
        .records[0]
    )
    assert newest.run_id == strict.run_id
    upstream = newest.asset_materialization.metadata["upstream_data_versions"].value
    assert upstream[ONNX] == before["onnx_sha256"], "the strict report covers the same bytes"
    decision = promotion.evaluate(
        platform["client"],
        FRAUD,
        version,
        catalog=CATALOG,
        records=DagsterRecords(platform["instance"]),
    )
    rows = _gate_rows(decision)
    assert rows["export_validation"].passed, decision.table()
    assert decision.evidence.facts["report_sha256"] == before["report_sha256"]
    assert "did not succeed (FAILURE)" in rows["evidence"].detail, rows["evidence"].detail


def test_promotion_margin_is_the_lineages_own_and_relative(platform):
    """The YAML's promotion_margin (relative) decides the champion gate; --margin overrides."""
    from dataclasses import replace

    records = DagsterRecords(platform["instance"])
    a, b = platform["fraud_a"], platform["fraud_b"]
    value = {v: _records_metric(platform, v) for v in (a, b)}
    assert value[a] != value[b], "two trainings with other seeds and params differ"
    better, worse = sorted((a, b), key=lambda v: -value[v])
    baseline = _alias(platform, FRAUD)
    _promote(platform, FRAUD, better, reason="margin test champion", rollback=True)
    needed = (value[better] - value[worse]) / abs(value[better])  # just admits the worse one
    declared = CATALOG.by_model(FRAUD)
    others = tuple(s for s in CATALOG.lineages if s is not declared)
    try:
        for margin, admitted in ((needed / 2, False), (needed * 2, True)):
            lineages = (*others, replace(declared, promotion_margin=margin))
            decision = promotion.evaluate(
                platform["client"],
                FRAUD,
                worse,
                catalog=replace(CATALOG, lineages=lineages),
                records=records,
            )
            gate = _gate_rows(decision)["champion"]
            assert gate.passed is admitted, gate.detail
            assert f"promotion_margin of lineage '{declared.name}'" in gate.detail
            assert decision.margin == margin
        # An explicit override (the CLI's --margin) wins over the declaration.
        decision = promotion.evaluate(
            platform["client"], FRAUD, worse, catalog=CATALOG, records=records, margin=needed / 2
        )
        gate = _gate_rows(decision)["champion"]
        assert not gate.passed and "explicit override" in gate.detail
    finally:
        _promote(platform, FRAUD, baseline, reason="module baseline", rollback=True)


def test_promotion_records_event_and_tags(platform):
    event = _promote(platform, EMBEDDER, platform["embedder"], reason="int8 passes parity")
    jsonschema.validate(event, promotion.event_schema())
    assert _alias(platform, EMBEDDER) == platform["embedder"]
    tags = platform["client"].get_model_version(EMBEDDER, platform["embedder"]).tags
    assert tags["promoted_by"] == "pytest" and tags["promotion_reason"] == "int8 passes parity"
    stored = [e for e in _events(platform) if e["event_id"] == event["event_id"]]
    assert stored == [event]
    assert {g["name"] for g in event["gates"]} >= {"fp32_parity", "int8_retrieval", "champion"}


# ---- sensor → bundle ------------------------------------------------------------------------


def _sensor_tick(platform, cursor: str | None):
    """model_promotion_sensor on the module's instance, registry, artifact store and catalog."""
    resources = {k: platform["resources"][k] for k in ("mlflow", "store")}
    context = build_sensor_context(
        cursor=cursor, resources=resources, instance=platform["instance"]
    )
    return promotion_sensor(platform["resources"]["catalog"])(context)


def test_sensor_requests_one_run_per_move_and_keeps_its_cursor(platform):
    result = _sensor_tick(platform, None)
    keys = sorted(r.run_key for r in result.run_requests)
    assert keys == [f"{FRAUD}@{platform['fraud_a']}", f"{EMBEDDER}@{platform['embedder']}"]
    # The next tick (or a restarted daemon, which reads the stored cursor) sees no move.
    again = _sensor_tick(platform, result.cursor)
    assert not again.run_requests and again.cursor == result.cursor
    platform["sensor_cursor"] = result.cursor


def test_serving_bundle_builds_a_verified_bento(platform):
    result = materialize(
        [serving_bundle, serving_bundle_smoke],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata["results"].value
    md = result.get_asset_materialization_events()[0].materialization.metadata
    tag = md["bento_tag"].value
    assert Path(md["dockerfile"].value).exists()
    manifest = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
    assert manifest["models"]["fraud"]["version"] == platform["fraud_a"]
    assert manifest["models"]["fraud"]["provenance"][0]["asset"] == RAW
    bento_dir = Path(md["bento_path"].value)
    assert json.loads((bento_dir / "src" / "serving" / "bundle.json").read_text()) == manifest
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements
    assert "torch" not in requirements and "scikit-learn" not in requirements
    platform["bento_tag"] = tag


def test_a_search_report_that_passes_after_the_bundle_was_built_rebuilds_it_once(platform):
    """The bundle follows validation (issue 27): a newer passing search_quality_report for the
    served embedder makes model_promotion_sensor request serving_job, exactly once."""
    from ml_assets.assets.export import embedding_model_onnx
    from ml_assets.assets.search import embedding_index, search_corpus
    from ml_assets.assets.search_validation import search_quality_report

    first = _sensor_tick(platform, None)  # the bundle's own builds, and the evidence they saw
    quiet = _sensor_tick(platform, first.cursor)
    assert not quiet.run_requests and "carries every passed check" in quiet.skip_reason.skip_message
    upstream = [a.to_source_asset() for a in (embedding_model_onnx, search_corpus, embedding_index)]
    report = materialize(
        [*upstream, search_quality_report],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert report.success
    (evaluation,) = [e for e in report.get_asset_check_evaluations() if e.passed]
    tick = _sensor_tick(platform, first.cursor)
    (request,) = tick.run_requests
    assert request.run_key.startswith("search:") and request.job_name in (None, "serving_job")
    # A restarted daemon (the old cursor) asks for the same run key, which Dagster skips; the
    # stored cursor asks for nothing more.
    assert [r.run_key for r in _sensor_tick(platform, first.cursor).run_requests] == [
        request.run_key
    ]
    assert not _sensor_tick(platform, tick.cursor).run_requests
    assert evaluation.check_name == "hybrid_not_worse"


def test_the_validation_of_a_version_is_found_by_the_sensor_in_the_records(platform):
    """What model_promotion_sensor follows for a production version the bundle lacks: the
    passing evaluations of its chain, looked up by the sha256 its registry tags name."""
    from ml_assets.sensors.bundle_follow import validation_key

    records, client = DagsterRecords(platform["instance"]), platform["client"]
    for name, version in ((FRAUD, platform["fraud_b"]), (EMBEDDER, platform["embedder"])):
        tags = dict(client.get_model_version(name, version).tags)
        key = validation_key(records, CATALOG.by_model(name), name, version, tags)
        assert key and all(part.isdigit() for part in key.split(",")), (name, key)
    tags = dict(client.get_model_version(FRAUD, platform["fraud_b"]).tags)
    never = {**tags, "onnx_sha256": "0" * 64}  # bytes this platform never exported
    spec = CATALOG.by_model(FRAUD)
    assert validation_key(records, spec, FRAUD, platform["fraud_b"], never) is None


@pytest.fixture(scope="module")
def server(platform, vector_dsn):
    if "bento_tag" not in platform:
        pytest.skip("the bundle was not built")
    proc = start_server(
        platform["bento_tag"],
        bentoml_home=platform["home"],
        workers=2,
        env={
            "MLFLOW_TRACKING_URI": platform["mlflow_url"],
            "ML_VECTOR_PG_DSN": vector_dsn,
            "ML_SERVING_API_KEY": API_KEY,
        },
    )
    with proc:
        proc.wait_ready(timeout_s=120)
        yield proc


# ---- endpoints ------------------------------------------------------------------------------


def test_endpoints_answer_with_the_promoted_versions(server, platform):
    fraud, emb = f"{FRAUD}@{platform['fraud_a']}", f"{EMBEDDER}@{platform['embedder']}"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/livez").status_code == 200 and c.get("/readyz").status_code == 200
        r = c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION})
        assert r.status_code == 200, r.text
        body = r.json()
        assert 0 <= body["probability"] <= 1 and body["model_version"] == fraud
        assert body["is_fraud"] == (body["probability"] >= body["threshold"])
        batch = [dict(SMOKE_TRANSACTION, amount=float(a)) for a in (5, 50, 5000)]
        r = c.post("/v1/score/batch", json={"transactions": batch})
        assert r.status_code == 200 and r.json()["count"] == 3
        # The fraud lineage is a declared lineage like any other: its generic route serves the
        # same model (its request model generated from the YAML's schema) with the same answer.
        generic = c.post("/v1/models/fraud/predict", json={"features": SMOKE_TRANSACTION})
        assert generic.status_code == 200, generic.text
        assert generic.json()["model_version"] == fraud
        assert generic.json()["prediction"] == pytest.approx(body["probability"], abs=1e-6)
        unknown = {**SMOKE_TRANSACTION, "merchant_category": "casino"}
        assert c.post("/v1/models/fraud/predict", json={"features": unknown}).status_code == 400
        r = c.post("/embed", json={"texts": ["front-month Brent", "power baseload Q1"]})
        assert r.status_code == 200 and r.json()["dim"] == 384 and r.json()["model_version"] == emb
        models = c.get("/models").json()
        assert (
            models["models"]["fraud"]["sha256"]["model.onnx"]
            == (
                platform["client"].get_model_version(FRAUD, platform["fraud_a"]).tags["onnx_sha256"]
            )
        )
        # CUDA only where this onnxruntime has it; the CPU is always there to fall back on.
        assert models["embedder_providers"][-1] == "CPUExecutionProvider"
        chain = [link["asset"] for link in models["models"]["fraud"]["provenance"]]
        assert chain[0] == RAW and chain[-1] == ONNX
        metrics = c.get("/metrics").text
        assert "ml_assets_model_loaded" in metrics and "ml_assets_inference_seconds" in metrics
    # BentoML's own client, against the same server.
    with bentoml.SyncHTTPClient(server.url) as client:
        assert client.score(transaction=SMOKE_TRANSACTION)["model_version"] == fraud


def test_search_is_per_tenant(server):
    corpus = load_corpus(default_corpus_path()).documents
    owner = {d.id: d.tenant_id for d in corpus}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for tenant in ("northwind-energy", "boreal-commodities"):
            r = c.post(
                "/search",
                json={"query": "Henry Hub natural gas balance of month", "tenant_id": tenant},
            )
            assert r.status_code == 200, r.text
            hits = r.json()["hits"]
            assert hits and {owner[h["doc_id"]] for h in hits} == {tenant}
            assert all(h["vector_rank"] or h["lexical_rank"] for h in hits)
        r = c.post("/search", json={"query": "gas", "tenant_id": "no-such-tenant"})
        assert r.status_code == 404 and "no-such-tenant" in r.text
        r = c.post("/search", json={"query": "gas"})
        assert r.status_code == 400 and "tenant_id" in r.text


BAD_REQUESTS = [
    ("/v1/score", {"transaction": {**SMOKE_TRANSACTION, "amount": "912"}}),  # wrong type
    ("/v1/score", {"transaction": {k: v for k, v in SMOKE_TRANSACTION.items() if k != "hour"}}),
    ("/v1/score", {"transaction": {**SMOKE_TRANSACTION, "hour": 31}}),  # out of range
    ("/v1/score", {"transaction": {**SMOKE_TRANSACTION, "extra": 1}}),
    ("/v1/score", {"transaction": {**SMOKE_TRANSACTION, "merchant_category": ""}}),
    ("/v1/score/batch", {"transactions": []}),
    ("/v1/score/batch", {"transactions": [SMOKE_TRANSACTION] * 1001}),
    ("/embed", {"texts": []}),
    ("/embed", {"texts": ["x"] * 257}),
    ("/embed", {"texts": [""]}),
    ("/embed", {"texts": "not a list"}),
    ("/search", {"query": "", "tenant_id": "northwind-energy"}),
    ("/search", {"query": "gas", "tenant_id": "northwind-energy", "limit": 1000}),
    ("/search", {"query": "gas", "tenant_id": "northwind-energy", "mode": "magic"}),
]


def test_bad_input_is_a_4xx_with_a_message(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path, body in BAD_REQUESTS:
            r = c.post(path, json=body)
            assert 400 <= r.status_code < 500, (path, body if len(str(body)) < 300 else "…", r)
            assert r.text.strip(), path
        raw = json.dumps({"transaction": SMOKE_TRANSACTION}).replace("912.5", "NaN")
        for content in (raw, raw.replace("NaN", "Infinity"), "{not json", ""):
            r = c.post("/v1/score", content=content, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (content, r.status_code, r.text)
        # Still healthy, and the errors were counted.
        assert c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION}).status_code == 200


def test_concurrent_embeds_are_batched_and_each_gets_its_own_vectors(server, platform):
    """16 clients of 8 new texts at once: the workers' batchers run them together (/metrics
    counts fewer embedder runs than requests), and each answer holds its own texts' vectors
    and the served version; an oversize request is still a 400."""
    from ml_assets.core.text_embedder import OnnxTextEmbedder

    with httpx.Client(base_url=server.url, timeout=30) as c:
        served = c.get("/models").json()["models"]["embedder"]
        runs0 = _metric(c, "ml_assets_embed_batch_requests_count")
        requests0 = _metric(c, "ml_assets_embed_batch_requests_sum")
    name, version = served["bento_model"].split(":")
    model_dir = platform["home"] / "models" / name / version
    local = OnnxTextEmbedder(
        (model_dir / "model.onnx").read_bytes(), model_dir / "tokenizer.json", intra_op_threads=1
    )
    clients, stamp = 16, time.time_ns()
    texts = [
        [f"cargo {stamp} {i}-{j} diverted to Europe" for j in range(8)] for i in range(clients)
    ]
    barrier = threading.Barrier(clients)
    answers: dict[int, httpx.Response] = {}

    def post(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait()
            answers[i] = c.post("/embed", json={"texts": texts[i]})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == list(range(clients))
    for i, r in answers.items():
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == f"{EMBEDDER}@{platform['embedder']}"
        alone = local.embed(texts[i])
        # int8 quantises activations with one scale per batch: a row moves a little with the
        # other texts of its batch (within one request too), never far.
        cos = (np.array(body["vectors"], dtype=np.float32) * alone).sum(axis=1)
        assert cos.min() >= 0.98, (i, cos.min())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        runs = _metric(c, "ml_assets_embed_batch_requests_count") - runs0
        batched = _metric(c, "ml_assets_embed_batch_requests_sum") - requests0
        assert batched == clients and runs < clients, (runs, batched)
        r = c.post("/embed", json={"texts": ["x"] * 257})
        assert r.status_code == 400 and "texts" in r.text


def test_reload_needs_the_api_key(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/reload", json={}).status_code == 401
        assert c.post("/reload", json={}, headers={"X-API-Key": "wrong"}).status_code == 403


def _metric(c: httpx.Client, name: str, headers: dict | None = None, **labels: str) -> float:
    """The sum of `name`'s samples on /metrics whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = c.get("/metrics", headers=headers).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_metrics_count_requests_and_a_repeated_search_skips_the_model(server):
    total = "bentoml_service_request_total"
    cache = "ml_assets_embedding_cache_total"
    query = {
        "query": f"Henry Hub balance of month {time.time_ns()}",
        "tenant_id": "northwind-energy",
    }
    with httpx.Client(base_url=server.url, timeout=30) as c:
        ok0 = _metric(c, total, endpoint="/search", http_response_code="200")
        bad0 = _metric(c, total, endpoint="/v1/score", http_response_code="400")
        hit0 = _metric(c, cache, endpoint="search", result="hit")
        miss0 = _metric(c, cache, endpoint="search", result="miss")
        answers = [c.post("/search", json=query) for _ in range(6)]
        assert all(r.status_code == 200 and r.json() == answers[0].json() for r in answers)
        bad = c.post("/v1/score", json={"transaction": {**SMOKE_TRANSACTION, "hour": 31}})
        assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["transaction", "hour"]
        hits = _metric(c, cache, endpoint="search", result="hit") - hit0
        misses = _metric(c, cache, endpoint="search", result="miss") - miss0
        assert hits + misses == 6 and misses <= 2, (hits, misses)  # once per worker at most
        assert _metric(c, total, endpoint="/search", http_response_code="200") - ok0 == 6
        assert _metric(c, total, endpoint="/v1/score", http_response_code="400") - bad0 == 1
        assert _metric(c, "bentoml_service_request_duration_seconds_count", endpoint="/search")
        assert _metric(c, "ml_assets_embedding_cache_entries") >= 1


CLIENT_KEY = "test-client-key"


@pytest.fixture(scope="module")
def guarded_server(platform, vector_dsn):
    """One worker with one thread, a concurrency cap of 2, and the client key required."""
    if "bento_tag" not in platform:
        pytest.skip("the bundle was not built")
    proc = start_server(
        platform["bento_tag"],
        bentoml_home=platform["home"],
        workers=1,
        env={
            "ML_VECTOR_PG_DSN": vector_dsn,
            "ML_SERVING_API_KEY": API_KEY,
            "ML_SERVING_REQUIRE_KEY": "1",
            "ML_SERVING_CLIENT_KEY": CLIENT_KEY,
            "ML_SERVING_MAX_CONCURRENCY": "2",
            "ML_SERVING_THREADS": "1",
        },
    )
    with proc:
        proc.wait_ready(timeout_s=120)
        yield proc


def test_every_route_needs_the_client_key_when_required(guarded_server):
    key = {"X-API-Key": CLIENT_KEY}
    routes = [
        ("POST", "/v1/score", {"transaction": SMOKE_TRANSACTION}),
        ("POST", "/v1/score/batch", {"transactions": [SMOKE_TRANSACTION]}),
        ("POST", "/embed", {"texts": ["front-month Brent"]}),
        ("GET", "/models", None),
        ("GET", "/metrics", None),
        ("GET", "/docs.json", None),
    ]
    with httpx.Client(base_url=guarded_server.url, timeout=30) as c:
        assert c.get("/livez").status_code == 200 and c.get("/readyz").status_code == 200
        for method, path, body in routes:
            r = c.request(method, path, json=body)
            assert r.status_code == 401 and "X-API-Key" in r.json()["error"], (path, r.text)
            wrong = c.request(method, path, json=body, headers={"X-API-Key": "wrong"})
            assert wrong.status_code == 403, (path, wrong.text)
            assert c.request(method, path, json=body, headers=key).status_code == 200, path
        admin = {"Authorization": f"Bearer {API_KEY}"}
        score = {"transaction": SMOKE_TRANSACTION}
        assert c.post("/v1/score", json=score, headers=admin).status_code == 200
        # The client key is not the admin key: /reload still refuses it.
        assert c.post("/reload", json={}, headers=key).status_code == 403
        doc = c.get("/docs.json", headers=key).json()
        assert {"401", "403"} <= set(doc["paths"]["/embed"]["post"]["responses"])
        assert _metric(c, "bentoml_service_request_total", key, http_response_code="401") >= 5


def test_past_the_concurrency_cap_a_request_gets_429_with_retry_after_not_a_wait(
    guarded_server,
):
    key = {"X-API-Key": CLIENT_KEY}
    clients = 10
    barrier = threading.Barrier(clients)
    results: list[tuple[int, str | None, float]] = []

    def post(i: int) -> None:
        # Distinct texts, so the embedding cache cannot answer: each request runs the model.
        texts = [f"power baseload delivery {i}-{j} " * 8 for j in range(48)]
        with httpx.Client(base_url=guarded_server.url, timeout=60) as c:
            barrier.wait()
            t0 = time.monotonic()
            r = c.post("/embed", json={"texts": texts}, headers=key)
            results.append((r.status_code, r.headers.get("retry-after"), time.monotonic() - t0))

    with httpx.Client(base_url=guarded_server.url, timeout=30) as c:
        before = _metric(c, "bentoml_service_request_total", key, http_response_code="429")
        threads = [threading.Thread(target=post, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == clients, "every request was answered"
        refused = [r for r in results if r[0] == 429]
        served = [r for r in results if r[0] == 200]
        assert len(refused) + len(served) == clients, results
        assert refused and len(served) >= 2, results
        assert all(retry == "1" for _, retry, _ in refused)
        slowest_ok = max(s for _, _, s in served)
        assert all(s < slowest_ok for _, _, s in refused), results  # refused at once
        after = _metric(c, "bentoml_service_request_total", key, http_response_code="429")
        assert after - before == len(refused)
        assert c.post("/embed", json={"texts": ["after the burst"]}, headers=key).status_code == 200


def _hammer(url: str, stop: threading.Event, seen: list, failures: list) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            try:
                r = c.post("/v1/score", json={"transaction": SMOKE_TRANSACTION})
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                seen.append((time.monotonic(), r.json()["model_version"]))


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
    from ml_assets.assets.promotion_job import promote_model_job
    from ml_assets.assets.serving import serving_deployment

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
        resources={k: platform["resources"][k] for k in ("mlflow", "postgres")},
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
    # A gate rejection through the job fails the run and changes nothing.
    rejected = promote_model_job.execute_in_process(
        run_config={
            "ops": {
                "promote_model": {
                    "config": {"model": FRAUD, "version": "9999", "reason": "no such version"}
                }
            }
        },
        resources={k: platform["resources"][k] for k in ("mlflow", "postgres")},
        instance=platform["instance"],
        raise_on_error=False,
    )
    assert not rejected.success and _alias(platform, FRAUD) == platform["fraud_b"]


# ---- integrity: what is served is what was validated, however the alias moved ------------------


def _served(url: str) -> dict[str, tuple[str, str]]:
    """What the endpoint serves, asserted the same on every worker (a new connection each time:
    a kept-alive one always reaches the same worker)."""
    answers = []
    for _ in range(8):
        with httpx.Client(base_url=url, timeout=30, headers={"Connection": "close"}) as c:
            answers.append(c.get("/models").json()["models"])
    assert all(a == answers[0] for a in answers), "the workers serve different models"
    models = answers[0]
    return {
        r: (f"{m['registered_model']}@{m['version']}", m["sha256"]["model.onnx"])
        for r, m in models.items()
    }


def _serving_run(platform):
    return materialize(
        [serving_bundle, serving_bundle_smoke, serving_deployment],
        resources=platform["resources"],
        instance=platform["instance"],
        raise_on_error=False,
    )


def _rejections(platform, version: str) -> list[dict]:
    return [
        e
        for e in events.read(platform["events_dsn"], events.PROMOTION_REJECTED)
        if e["model"] == FRAUD and e["version"] == version
    ]


def _move_alias_and_refuse(
    platform, server, version: str, cursor: str, webhook
) -> tuple[str, dict]:
    """A plain MlflowClient moves the alias; the serving run must refuse and change nothing."""
    client = platform["client"]
    before = _served(server.url)
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, version)
    tick = _sensor_tick(platform, cursor)
    assert [r.run_key for r in tick.run_requests] == [f"{FRAUD}@{version}"]
    run = _serving_run(platform)
    assert not run.success
    text = failure_text(run)
    assert f"refused to serve {FRAUD} v{version}" in text, text
    (failure,) = run.get_step_failure_events()
    gates = failure.step_failure_data.user_failure_data.metadata["gates"].value
    assert "**FAIL**" in gates, gates
    assert _served(server.url) == before, "the endpoint keeps the last validated bundle"
    (event,) = _rejections(platform, version)
    jsonschema.validate(event, events.schema(events.PROMOTION_REJECTED))
    assert any(a["model"] == FRAUD and a["version"] == version for a in webhook)
    # One run per move: the next tick does not ask again for the refused version.
    again = _sensor_tick(platform, tick.cursor)
    assert not again.run_requests
    return tick.cursor, event


def _register_perturbed(platform, base_version: str) -> tuple[str, bytes]:
    """A version registered by a plain MLflow client: `base_version`'s ONNX file with one bit
    flipped, a provenance.json and tags that name the new bytes. Returns (version, bytes)."""
    client = platform["client"]
    good = client.get_model_version(FRAUD, base_version)
    mlflow = platform["resources"]["mlflow"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(client.download_artifacts(good.run_id, "onnx/model.onnx", tmp)).read_bytes()
        prov = json.loads(
            Path(client.download_artifacts(good.run_id, "provenance.json", tmp)).read_bytes()
        )
    middle = len(onnx) // 2
    perturbed = onnx[:middle] + bytes([onnx[middle] ^ 0x01]) + onnx[middle + 1 :]
    prov["artifact"]["sha256"] = sha256_bytes(perturbed)
    prov_bytes = canonical_json(prov)
    run = client.create_run(client.get_run(good.run_id).info.experiment_id)
    mlflow.log_bytes(run.info.run_id, perturbed, "onnx/model.onnx")
    mlflow.log_bytes(run.info.run_id, prov_bytes, "provenance.json")
    forged = client.create_model_version(
        FRAUD,
        f"runs:/{run.info.run_id}/onnx",
        run_id=run.info.run_id,
        tags={
            **dict(good.tags),
            "onnx_sha256": sha256_bytes(perturbed),
            "provenance_sha256": sha256_bytes(prov_bytes),
            "export_validation": "passed",
        },
    )
    return str(forged.version), perturbed


def test_alias_moved_by_any_client_is_gated_where_models_are_served(
    server, platform, monkeypatch, webhook
):
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    cursor = _sensor_tick(platform, None).cursor
    client = platform["client"]
    assert _served(server.url)["fraud"][0] == f"{FRAUD}@{platform['fraud_b']}"

    # (a) A version whose export validation failed its blocking output_parity check.
    strict = materialize(
        FRAUD_ASSETS,
        selection=RETRAIN,
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={
            "ops": {
                op("model"): {"config": {"seed": 13, "params": {"max_iter": 100}}},
                op("export_validation_report"): {"config": {"max_output_diff": 1e-12}},
            }
        },
        raise_on_error=False,
    )
    parity = [c for c in strict.get_asset_check_evaluations() if c.check_name == "output_parity"]
    assert parity and not parity[0].passed
    failed_version = _ref(platform["root"], MODEL).extra["model_version"]
    cursor, event = _move_alias_and_refuse(platform, server, failed_version, cursor, webhook)
    assert "export_validation" in event["failed"]

    # (b) A version registered by a plain client: a perturbed ONNX file, its onnx_sha256 tag
    # rewritten to match, and export_validation=passed.
    forged, perturbed = _register_perturbed(platform, platform["fraud_b"])
    cursor, event = _move_alias_and_refuse(platform, server, forged, cursor, webhook)
    assert "onnx_export" in event["failed"]
    assert event["evidence"]["onnx_sha256"] == sha256_bytes(perturbed)

    # A valid move (a plain client again) is served, with the verdicts it was let in by.
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, platform["fraud_a"])
    tick = _sensor_tick(platform, cursor)
    assert [r.tags["ml-assets/promoted_version"] for r in tick.run_requests] == [
        platform["fraud_a"]
    ]
    assert _serving_run(platform).success
    served = _served(server.url)
    assert served["fraud"][0] == f"{FRAUD}@{platform['fraud_a']}"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        gate = c.get("/models").json()["models"]["fraud"]["gate"]
    assert gate["approved"] and {v["check"] for v in gate["verdicts"]} == {
        "expectations",
        "quality_delta",
        "output_parity",
        "latency",
    }
    assert all(v["passed"] and v["run_id"] and v["evaluation_id"] for v in gate["verdicts"])


# ---- evidence nobody can forge or poison ------------------------------------------------------

REPORT_CHECKS = ("quality_delta", "output_parity", "latency")


def _bentos(platform) -> set[str]:
    return {p.name for p in (platform["home"] / "bentos" / "ml-assets").iterdir()}


def _newest(instance, asset: str):
    return instance.fetch_materializations(AssetKey.from_user_string(asset), limit=1).records[0]


def test_records_forged_with_the_instance_api_admit_nothing(server, platform, monkeypatch, webhook):
    """The issue's finding 1: a perturbed version, runless records of its export, a report over
    it and three passed check evaluations; then the alias moved to it."""
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    instance, client = platform["instance"], platform["client"]
    served = _served(server.url)
    validated = served["fraud"][0].split("@")[1]
    cursor = _sensor_tick(platform, None).cursor
    version, perturbed = _register_perturbed(platform, validated)
    sha = sha256_bytes(perturbed)
    real = _newest(instance, REPORT).asset_materialization
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey.from_user_string(ONNX),
            tags={DATA_VERSION_TAG: sha},
            metadata={"registered_model": f"{FRAUD} v{version}"},
        )
    )
    upstream = {**real.metadata["upstream_data_versions"].value, ONNX: sha}
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey.from_user_string(REPORT),
            tags={DATA_VERSION_TAG: sha256_bytes(b"a forged report")},
            metadata={**real.metadata, "upstream_data_versions": MetadataValue.json(upstream)},
        )
    )
    forged = _newest(instance, REPORT)
    assert forged.run_id == ""
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=forged.storage_id, run_id="", timestamp=forged.timestamp
    )
    for check in REPORT_CHECKS:
        instance.report_runless_asset_event(
            AssetCheckEvaluation(
                asset_key=AssetKey.from_user_string(REPORT),
                check_name=check,
                passed=True,
                target_materialization_data=target,
            )
        )

    decision = promotion.evaluate(
        client, FRAUD, version, catalog=CATALOG, records=DagsterRecords(instance)
    )
    rows = _gate_rows(decision)
    assert not decision.approved
    assert not rows["onnx_export"].passed and not rows["export_validation"].passed
    evidence = rows["evidence"].detail
    for asset in (ONNX, REPORT):  # other tests of this module may have left runless ones too
        assert re.search(rf"ignored \d+ records? of {asset}: runless", evidence), evidence

    bentos = _bentos(platform)
    _, event = _move_alias_and_refuse(platform, server, version, cursor, webhook)
    assert {"onnx_export", "export_validation"} <= set(event["failed"])
    assert _bentos(platform) == bentos, "a refused version must not get a Bento"
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, validated)


@pytest.fixture
def webserver(platform, tmp_path):
    """A real dagster-webserver on the module's instance (its unauthenticated REST API)."""
    with dagster_webserver(platform["instance"].root_directory, tmp_path / "webserver.log") as url:
        yield url


def test_a_report_posted_to_the_webservers_rest_api_blocks_nothing(
    server, platform, webserver, monkeypatch, webhook
):
    """The issue's finding 2: one unauthenticated POST of a report over production's bytes
    (and a failed check) must neither keep the validated version out nor admit anything."""
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    instance, client = platform["instance"], platform["client"]
    served = _served(server.url)
    validated, production_sha = served["fraud"][0].split("@")[1], served["fraud"][1]
    posted = httpx.post(
        f"{webserver}/report_asset_materialization/{REPORT}",
        json={
            "data_version": sha256_bytes(b"poison"),
            "metadata": {"upstream_data_versions": {ONNX: production_sha}},
        },
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    failed = httpx.post(
        f"{webserver}/report_asset_check/{REPORT}",
        json={"check_name": "quality_delta", "passed": False},
        timeout=30,
    )
    assert failed.status_code == 200, failed.text
    assert _newest(instance, REPORT).run_id == "", "the poison is the newest report"

    decision = promotion.evaluate(
        client, FRAUD, validated, catalog=CATALOG, records=DagsterRecords(instance)
    )
    assert decision.approved, decision.table()
    evidence = _gate_rows(decision)["evidence"].detail
    assert re.search(rf"ignored \d+ records? of {REPORT}: runless", evidence), evidence

    # A refusal, then the alias moved back to the validated version: it is bundled and served.
    cursor = _sensor_tick(platform, None).cursor
    refused, _ = _register_perturbed(platform, validated)
    cursor, _ = _move_alias_and_refuse(platform, server, refused, cursor, webhook)
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, validated)
    tick = _sensor_tick(platform, cursor)
    # The validated version becomes production a second time here: its run key says so.
    assert [r.run_key for r in tick.run_requests] == [f"{FRAUD}@{validated}#2"]
    run = _serving_run(platform)
    assert run.success, failure_text(run)
    assert _served(server.url)["fraud"] == served["fraud"]
    # The bundle this run built keeps, for each verdict, the run, job, step and evaluation it
    # came from, and what the rule ignored (the endpoint already served these bytes: it keeps
    # its generation, and /models the gate record of the bundle it was loaded from).
    manifest = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
    gate = manifest["models"]["fraud"]["gate"]
    for verdict in gate["verdicts"]:
        origin = verdict["origin"]
        assert origin["run_id"] and origin["status"] == "SUCCESS", verdict
        assert origin["job"] and origin["step"] and verdict["evaluation_id"] is not None
    assert any("runless" in line for line in gate["records_ignored"]), gate["records_ignored"]


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
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, prod["version"])
    client.set_registered_model_alias(
        EMBEDDER, PRODUCTION_ALIAS, bundle["models"]["embedder"]["version"]
    )
    with start_server(tag, bentoml_home=home, workers=1, env=env) as proc:
        proc.wait_ready(timeout_s=120)
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            c.get("/models")
            r = c.post("/reload", json={}, headers={"X-API-Key": API_KEY})
            assert r.status_code == 409 and "no passed verdict" in r.text, r.text
            assert c.get("/readyz").status_code == 200  # still serving the validated models
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
    from ml_assets.components.defs_folder import load_defs_folder

    defs = load_defs_folder().defs

    curves = assets_of_lineage(defs, "curves")
    run = materialize(
        curves,
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={"ops": {"curves__raw_data": {"config": {"rows": 5_000}}}},
    )
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
    from dagster.components.testing import create_defs_folder_sandbox

    from ml_assets.components.defs_folder import catalog_of
    from tests.test_components import (
        NEW_LINEAGE_GENERATOR,
        NEW_LINEAGE_TRAIN,
        NEW_LINEAGE_YAML,
    )

    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    cursor = _sensor_tick(platform, None).cursor
    client = platform["client"]
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "loans"
        folder.mkdir()
        (folder / "defs.yaml").write_text(NEW_LINEAGE_YAML)
        (folder / "train.py").write_text(NEW_LINEAGE_TRAIN)
        (folder / "generator.py").write_text(NEW_LINEAGE_GENERATOR)
        with sandbox.build_component_tree() as tree:
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


# ---- the API contract ---------------------------------------------------------------------------
# Keep this last: schemathesis posts /reload with the key, which reloads the registry's production
# versions if they differ from what is served.


def _declared_schema(doc: dict, path: str, status: int) -> dict:
    response = doc["paths"][path]["post"]["responses"][str(status)]
    return {**response["content"]["application/json"]["schema"], "components": doc["components"]}


def test_openapi_document_declares_the_errors_returned_and_schemathesis_passes(server, tmp_path):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        doc = c.get("/docs.json").json()
        apis = {path for path, item in doc["paths"].items() if "post" in item}
        assert apis == {
            "/v1/score",
            "/v1/score/batch",
            "/v1/models/fraud/predict",
            "/v1/models/fraud/predict/batch",
            "/embed",
            "/search",
            "/reload",
        }
        for path in apis:
            declared = set(doc["paths"][path]["post"]["responses"])
            assert {"200", "400", "413", "415", "500", "503", "504"} <= declared, path
            # A predict route's model may be dropped by a reload (404 with the declared names).
            predict = path.startswith("/v1/models/")
            assert ("404" in declared) == (path == "/search" or predict), (path, declared)
            assert ({"401", "403", "409"} <= declared) == (path == "/reload"), (path, declared)
        # Postgres text holds no NUL: the schema says so (a pattern), and the route answers 400.
        search = doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
        search = search["schema"]
        if ref := search.get("$ref"):
            search = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert search["properties"]["query"]["pattern"] == "^[^\\x00]*$", search
        json_type = {"content-type": "application/json"}
        observed = [
            ("/v1/score", {"json": {"transaction": {**SMOKE_TRANSACTION, "hour": 31}}}, 400),
            ("/v1/score/batch", {"json": {"transactions": []}}, 400),
            ("/embed", {"content": b"{not json", "headers": json_type}, 400),
            ("/search", {"json": {"query": "gas"}}, 400),
            ("/search", {"json": {"query": "gas", "tenant_id": "no-such-tenant"}}, 404),
            ("/reload", {"json": {}}, 401),
            ("/reload", {"json": {}, "headers": {"X-API-Key": "wrong"}}, 403),
            ("/embed", {"content": b'{"texts": ["' + b"x" * (33 << 20) + b'"]}'}, 413),
            ("/v1/score", {"data": {"transaction": "x"}}, 415),
            # Found by schemathesis: Postgres text cannot hold NUL, and a manifest's models are
            # an object; both are bad input, not server errors.
            ("/search", {"json": {"query": "gas\x00", "tenant_id": "northwind-energy"}}, 400),
            (
                "/reload",
                {
                    "json": {"bundle": {"schema": BUNDLE_SCHEMA, "models": [None]}},
                    "headers": {"X-API-Key": API_KEY},
                },
                400,
            ),
        ]
        wrong = []
        for path, kwargs, status in observed:
            r = c.post(path, **kwargs)
            if r.status_code != status:
                wrong.append(f"{path}: expected {status}, got {r.status_code} {r.text[:200]}")
                continue
            jsonschema.validate(r.json(), _declared_schema(doc, path, status))
    # Real tenants for most generated searches, so they reach the index instead of a 404.
    tenants = sorted({d.tenant_id for d in load_corpus(default_corpus_path()).documents})
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"[dictionaries.tenants]\nvalues = {json.dumps(tenants)}\n\n[parameters]\n"
        '"body.tenant_id" = { dictionary = "tenants", probability = 0.8 }\n'
    )
    report = tmp_path / "schemathesis.xml"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(config),
            "run",
            f"{server.url}/docs.json",
            "--checks",
            "all",
            "--max-examples",
            "20",
            "--seed",
            "20261201",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--request-timeout",
            "60",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        cwd=tmp_path,  # hypothesis keeps its example database in the working directory
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout[-1500:])
    assert not wrong and done.returncode == 0, "\n".join(
        [*wrong, done.stdout[-8000:], done.stderr[-2000:]]
    )
