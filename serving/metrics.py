"""Prometheus metrics of the service, and the /metrics route that exposes every worker's.

BentoML's own traffic-metrics middleware is switched off (it costs more per request than a
score): serving/edge.py counts requests instead, under BentoML's metric names and labels
(`bentoml_service_request_total`, `_request_duration_seconds`, `_request_in_progress`,
`_last_request_timestamp_seconds`), so dashboards and the HPA read the same series.

Created in the worker (from the service's __init__), after BentoML set PROMETHEUS_MULTIPROC_DIR:
prometheus_client must be imported only then, or /metrics never sees these series.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# BentoML's default request-duration buckets (bentoml._internal.utils.metrics.DEFAULT_BUCKET).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_LABELS = [
    "endpoint",
    "service_name",
    "service_version",
    "http_response_code",
    "runner_name",
]


@dataclass(frozen=True)
class Metrics:
    errors: Any
    inference_seconds: Any
    model_loaded: Any
    reloads: Any
    requests: Any
    request_seconds: Any
    in_progress: Any
    last_request: Any
    cache_lookups: Any
    cache_entries: Any
    embed_batch_texts: Any
    embed_batch_requests: Any


def create_metrics(registry: Any = None) -> Metrics:
    """The service's instruments, in `registry` (prometheus_client's default one if None)."""
    import prometheus_client as prom

    if registry is None:
        registry = prom.REGISTRY
    return Metrics(
        errors=prom.Counter(
            "ml_assets_errors",
            "Requests refused or failed, by endpoint and error type",
            ["endpoint", "type"],
            registry=registry,
        ),
        inference_seconds=prom.Histogram(
            "ml_assets_inference_seconds",
            "Model time per request (ONNX Runtime), by endpoint",
            ["endpoint"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        ),
        model_loaded=prom.Gauge(
            "ml_assets_model_loaded",
            "1 for each model version this worker serves (0 once replaced)",
            ["role", "model", "version", "sha256"],
            multiprocess_mode="max",
            registry=registry,
        ),
        reloads=prom.Counter(
            "ml_assets_reloads", "Successful POST /reload switches", registry=registry
        ),
        requests=prom.Counter(
            "bentoml_service_request_total",
            "Total number of HTTP requests",
            REQUEST_LABELS,
            registry=registry,
        ),
        request_seconds=prom.Histogram(
            "bentoml_service_request_duration_seconds",
            "API HTTP request duration in seconds",
            REQUEST_LABELS,
            buckets=REQUEST_BUCKETS,
            registry=registry,
        ),
        in_progress=prom.Gauge(
            "bentoml_service_request_in_progress",
            "Total number of HTTP requests in progress now",
            REQUEST_LABELS[:3] + ["runner_name"],
            multiprocess_mode="livesum",
            registry=registry,
        ),
        last_request=prom.Gauge(
            "bentoml_service_last_request_timestamp_seconds",
            "Timestamp of the last received request",
            ["service_name", "service_version", "runner_name"],
            multiprocess_mode="max",
            registry=registry,
        ),
        cache_lookups=prom.Counter(
            "ml_assets_embedding_cache",
            "Texts looked up in the embedding cache, by endpoint and result (hit or miss); "
            "hit rate = hit / (hit + miss)",
            ["endpoint", "result"],
            registry=registry,
        ),
        cache_entries=prom.Gauge(
            "ml_assets_embedding_cache_entries",
            "Embeddings held in the cache (summed over live workers)",
            multiprocess_mode="livesum",
            registry=registry,
        ),
        embed_batch_texts=prom.Histogram(
            "ml_assets_embed_batch_texts",
            "Texts per embedder run of the /embed batcher (serving/batcher.py)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        ),
        embed_batch_requests=prom.Histogram(
            "ml_assets_embed_batch_requests",
            "Requests per embedder run of the /embed batcher",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        ),
    )


def exposition() -> tuple[bytes, str]:
    """Every worker's series (prometheus_client's multiprocess files), in the text format."""
    import prometheus_client as prom
    from prometheus_client import multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one process (tests in process)
        return prom.generate_latest(), prom.CONTENT_TYPE_LATEST
    registry = prom.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


async def metrics_endpoint(_: Any) -> Any:
    """GET /metrics (a Starlette endpoint): BentoML's own is off with its metrics middleware."""
    from starlette.responses import Response

    body, media_type = exposition()
    return Response(body, media_type=media_type)
