"""The promoted versions over HTTP from `bentoml serve`: every endpoint, per-tenant search, bad
input, batching, metrics; and a guarded server (client key, concurrency cap)."""

from __future__ import annotations

import json
import time

import bentoml
import httpx
import numpy as np
import pytest

from ml_assets.lineages.fraud.generator import SMOKE_TRANSACTION
from ml_assets.search.corpus import default_corpus_path, load_corpus
from tests.helpers import ONNX, RAW, at_once
from tests.test_serving.support import API_KEY, EMBEDDER, FRAUD, _metric, serve_first_bundle

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
    from ml_assets.search.text_embedder import OnnxTextEmbedder

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
    answers: dict[int, httpx.Response] = {}

    def post(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            answers[i] = c.post("/embed", json={"texts": texts[i]})

    at_once(clients, post)
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
    env = {
        "ML_VECTOR_PG_DSN": vector_dsn,
        "ML_SERVING_API_KEY": API_KEY,
        "ML_SERVING_REQUIRE_KEY": "1",
        "ML_SERVING_CLIENT_KEY": CLIENT_KEY,
        "ML_SERVING_MAX_CONCURRENCY": "2",
        "ML_SERVING_THREADS": "1",
    }
    yield from serve_first_bundle(platform, workers=1, env=env)


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
    results: list[tuple[int, str | None, float]] = []

    def post(i: int) -> None:
        # Distinct texts, so the embedding cache cannot answer: each request runs the model.
        texts = [f"power baseload delivery {i}-{j} " * 8 for j in range(48)]
        with httpx.Client(base_url=guarded_server.url, timeout=60) as c:
            t0 = time.monotonic()
            r = c.post("/embed", json={"texts": texts}, headers=key)
            results.append((r.status_code, r.headers.get("retry-after"), time.monotonic() - t0))

    with httpx.Client(base_url=guarded_server.url, timeout=30) as c:
        before = _metric(c, "bentoml_service_request_total", key, http_response_code="429")
        at_once(clients, post)
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
