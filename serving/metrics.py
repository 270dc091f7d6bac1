"""Prometheus metrics of the service (BentoML adds request counts and latency per route).

Created in the worker (from the service's __init__), after BentoML set PROMETHEUS_MULTIPROC_DIR:
prometheus_client must be imported only then, or /metrics never sees these series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metrics:
    errors: Any
    inference_seconds: Any
    model_loaded: Any
    reloads: Any


def create_metrics() -> Metrics:
    import prometheus_client as prom

    return Metrics(
        errors=prom.Counter(
            "ml_assets_errors",
            "Requests refused or failed, by endpoint and error type",
            ["endpoint", "type"],
        ),
        inference_seconds=prom.Histogram(
            "ml_assets_inference_seconds",
            "Model time per request (ONNX Runtime), by endpoint",
            ["endpoint"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        ),
        model_loaded=prom.Gauge(
            "ml_assets_model_loaded",
            "1 for each model version this worker serves (0 once replaced)",
            ["role", "model", "version", "sha256"],
            multiprocess_mode="max",
        ),
        reloads=prom.Counter("ml_assets_reloads", "Successful POST /reload switches"),
    )
