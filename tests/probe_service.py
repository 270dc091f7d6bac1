"""What the model-free probe services (tests/*_probe.py) take from serving/service.py: its BentoML
settings (one worker) and its wiring (serving/edge.py outermost, the uniform errors, our
/metrics), so `bentoml serve` on a probe meets the edge the service has."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from serving import edge, errors
from serving.metrics import metrics_endpoint

# BentoML's own metrics are off: ours answer /metrics under its names.
SETTINGS: dict[str, Any] = {
    "workers": 1,
    "metrics": {"enabled": False, "namespace": "bentoml_service"},
    "logging": {"access": {"enabled": False}},
}


def wire(service: Any, *middleware: Any) -> None:
    """The edge, the uniform errors, then `middleware` in order, and /metrics, as the service."""
    edge.install(service)
    service.add_asgi_middleware(errors.UniformErrors)
    for m in middleware:
        service.add_asgi_middleware(m)
    service.mount_asgi_app(Starlette(routes=[Route("/metrics", metrics_endpoint)]), path="/")
