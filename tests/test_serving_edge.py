"""The serving edge in process: the embedding cache (bounded, keyed by embedder hash, counted),
the client key and the concurrency cap (serving/edge.py) on a plain ASGI app. The same limits
are checked over HTTP against a real `bentoml serve` in tests/test_serving_limits.py."""

from __future__ import annotations

import asyncio

import numpy as np
import prometheus_client as prom
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.cache import CachedEmbedder, EmbeddingCache
from serving.edge import Edge, EdgeConfig, EdgeConfigError
from serving.metrics import create_metrics


class CountingEmbedder:
    """Deterministic vectors from the text; counts the texts it was asked to embed."""

    dim = 4

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed_flagged(self, texts):
        self.seen.extend(texts)
        vectors = np.array([[len(t), ord(t[0]), 1.0, 0.0] for t in texts], dtype=np.float32)
        return vectors, [len(t) > 10 for t in texts]


def test_cache_skips_the_model_for_repeated_texts_and_keys_by_embedder():
    cache, model = EmbeddingCache(max_entries=100), CountingEmbedder()
    first, cut, hits = cache.embed(model, "sha-a", ["gas", "power baseload Q1", "gas"])
    assert hits == 0 and model.seen == ["gas", "power baseload Q1"]  # each distinct text once
    assert cut == [False, True, False] and np.array_equal(first[0], first[2])
    again, cut2, hits = cache.embed(model, "sha-a", ["power baseload Q1", "gas"])
    assert hits == 2 and len(model.seen) == 2 and cut2 == [True, False]
    assert np.array_equal(again, first[[1, 0]])
    _, _, hits = cache.embed(model, "sha-b", ["gas"])  # another embedder: not a hit
    assert hits == 0 and model.seen[-1] == "gas"
    assert (cache.hits, cache.misses) == (2, 4)
    cache.clear()
    _, _, hits = cache.embed(model, "sha-a", ["gas"])
    assert hits == 0 and len(cache) == 1


def test_cache_is_bounded_by_entries_and_bytes_and_skips_long_texts():
    model = CountingEmbedder()
    cache = EmbeddingCache(max_entries=3)
    for t in "abcde":
        cache.embed(model, "s", [t])
    assert len(cache) == 3
    _, _, hits = cache.embed(model, "s", ["a"])  # the oldest went first
    assert hits == 0
    tiny = EmbeddingCache(max_entries=1000, max_bytes=2 * (16 + 2 + 100))
    for t in "abcde":
        tiny.embed(model, "s", [t])
    assert len(tiny) == 2
    short = EmbeddingCache(max_text_chars=5)
    short.embed(model, "s", ["x" * 6, "y"])
    assert len(short) == 1


def test_cached_embedder_reports_lookups():
    counts = []
    wrapped = CachedEmbedder(
        EmbeddingCache(), CountingEmbedder(), "s", lambda h, m: counts.append((h, m))
    )
    wrapped.embed(["q"])
    wrapped.embed(["q"])
    assert counts == [(0, 1), (1, 0)] and wrapped.dim == 4


# ---- the edge ---------------------------------------------------------------------------


REGISTRY = prom.CollectorRegistry()


@pytest.fixture(scope="module")
def metrics():
    return create_metrics(REGISTRY)


def _app(metrics, config, gate: asyncio.Event | None = None):
    async def work(request):
        await request.body()
        if gate is not None:
            await gate.wait()
        return JSONResponse({"ok": True})

    inner = Starlette(routes=[Route("/work", work, methods=["POST"]), Route("/livez", work)])
    return Edge(inner, lambda: metrics, ["/work"], config)


def _count(path: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "bentoml_service_request_total",
        {
            "endpoint": path,
            "service_name": "ml-assets",
            "service_version": "not available",
            "http_response_code": code,
            "runner_name": "ml-assets",
        },
    )
    return value or 0.0


def test_client_key_guards_every_route_but_the_probes(metrics):
    config = EdgeConfig(max_concurrency=None, keys=(b"client-key", b"admin-key"))
    with TestClient(_app(metrics, config)) as c:
        before = _count("/work", "401")
        r = c.post("/work", json={})
        assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
        assert _count("/work", "401") == before + 1
        assert c.post("/work", json={}, headers={"X-API-Key": "nope"}).status_code == 403
        assert c.post("/work", json={}, headers={"X-API-Key": "client-key"}).status_code == 200
        bearer = {"Authorization": "Bearer admin-key"}
        assert c.post("/work", json={}, headers=bearer).status_code == 200
        assert c.get("/livez").status_code == 200  # kubelet probes carry no key
        assert c.get("/metrics").status_code == 401


def test_require_key_without_a_client_key_refuses_to_start(monkeypatch):
    monkeypatch.setenv("ML_SERVING_REQUIRE_KEY", "1")
    monkeypatch.delenv("ML_SERVING_CLIENT_KEY", raising=False)
    with pytest.raises(EdgeConfigError, match="ML_SERVING_CLIENT_KEY"):
        EdgeConfig.from_env()
    monkeypatch.setenv("ML_SERVING_CLIENT_KEY", "k")
    monkeypatch.setenv("ML_SERVING_API_KEY", "a")
    assert EdgeConfig.from_env().keys == (b"k", b"a")


def test_past_the_cap_a_request_gets_429_with_retry_after_at_once(metrics):
    async def scenario():
        import httpx

        gate = asyncio.Event()
        app = _app(metrics, EdgeConfig(max_concurrency=2, keys=()), gate)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            held = [asyncio.create_task(c.post("/work", json={})) for _ in range(2)]
            await asyncio.sleep(0.05)
            refused = await asyncio.wait_for(c.post("/work", json={}), timeout=2)
            gate.set()
            done = await asyncio.gather(*held)
        return refused, done

    refused, done = asyncio.run(scenario())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "ML_SERVING_MAX_CONCURRENCY" in refused.json()["error"]
    assert [r.status_code for r in done] == [200, 200]


def test_batch_config_from_env_and_its_errors(monkeypatch):
    from serving.batcher import BatchConfig, BatcherConfigError

    assert BatchConfig.from_env() == BatchConfig()
    monkeypatch.setenv("ML_SERVING_EMBED_BATCH", "0")
    monkeypatch.setenv("ML_SERVING_EMBED_BATCH_TEXTS", "32")
    monkeypatch.setenv("ML_SERVING_EMBED_BATCH_WAIT_MS", "0.5")
    config = BatchConfig.from_env()
    assert not config.enabled and config.max_batch_texts == 32 and config.max_wait_ms == 0.5
    for name, value in (
        ("ML_SERVING_EMBED_BATCH_TEXTS", "0"),
        ("ML_SERVING_EMBED_QUEUE_TEXTS", "x"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(BatcherConfigError, match=name):
            BatchConfig.from_env()
        monkeypatch.delenv(name)
