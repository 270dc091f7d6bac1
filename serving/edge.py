"""The request edge: the outermost of the service's own ASGI middleware.

- RED metrics per route, under BentoML's metric names and labels (serving/metrics.py), with
  pre-bound label children so a request pays a few increments, not label lookups;
- the optional client API key (`ML_SERVING_REQUIRE_KEY=1`): every route but the probes needs
  `ML_SERVING_CLIENT_KEY` (or the admin key, `ML_SERVING_API_KEY`) in `X-API-Key` or
  `Authorization: Bearer`; 401 without one, 403 with a wrong one;
- a per-worker concurrency cap (`ML_SERVING_MAX_CONCURRENCY`): past it a request is answered
  429 with `Retry-After` at once, never queued. BentoML's own `traffic.max_concurrency` answers
  429 without `Retry-After` and sits outside any user middleware, so the cap lives here.

Error bodies are the uniform `{"error": ...}` of serving/errors.py.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from serving.errors import ASGIApp, Message, Receive, Scope, Send, max_body_bytes

PROBES = frozenset({"/livez", "/healthz", "/readyz"})
UNMETERED = PROBES | {"/metrics"}
OTHER = "other"  # the endpoint label of a path that is no route (bounded label values)
DEFAULT_MAX_CONCURRENCY = 100
RETRY_AFTER_S = 1


def install(service: Any, extra_routes: Iterable[str] = ()) -> EdgeConfig:
    """Add the edge to a bentoml Service before any other of its middleware (so it is the
    outermost of them); the instance's `metrics` attribute holds the instruments."""
    config = EdgeConfig.from_env()
    service.add_asgi_middleware(
        Edge,
        metrics=_instance_metrics,
        routes=[*(api.route for api in service.apis.values()), *extra_routes],
        config=config,
    )
    return config


def _instance_metrics() -> Any:
    from bentoml import get_current_service

    return get_current_service().metrics


class EdgeConfigError(RuntimeError):
    """The environment asks for something the edge cannot do (say, a key nobody set)."""


@dataclass(frozen=True)
class EdgeConfig:
    max_concurrency: int | None
    keys: tuple[bytes, ...]  # empty: no client key required
    retry_after_s: int = RETRY_AFTER_S

    @classmethod
    def from_env(cls) -> EdgeConfig:
        cap = os.environ.get("ML_SERVING_MAX_CONCURRENCY", str(DEFAULT_MAX_CONCURRENCY))
        try:
            max_concurrency = int(cap)
        except ValueError:
            raise EdgeConfigError(
                f"ML_SERVING_MAX_CONCURRENCY must be an integer (0: no cap), got {cap!r}"
            ) from None
        keys: tuple[bytes, ...] = ()
        if os.environ.get("ML_SERVING_REQUIRE_KEY", "0") == "1":
            given = [os.environ.get("ML_SERVING_CLIENT_KEY"), os.environ.get("ML_SERVING_API_KEY")]
            keys = tuple(k.encode() for k in given if k)
            if not os.environ.get("ML_SERVING_CLIENT_KEY"):
                raise EdgeConfigError(
                    "ML_SERVING_REQUIRE_KEY=1 needs the clients' key in ML_SERVING_CLIENT_KEY "
                    "(the admin key ML_SERVING_API_KEY is accepted beside it)"
                )
        return cls(max_concurrency if max_concurrency > 0 else None, keys)


def _json(
    status: int, error: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> tuple[Message, Message]:
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


def presented_key(scope: Scope) -> bytes | None:
    """The key in `X-API-Key`, else the token of `Authorization: Bearer <token>`."""
    bearer = None
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"x-api-key":
            return value
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    return bearer


class _Route:
    """The pre-bound metric children of one endpoint label."""

    __slots__ = ("codes", "seconds", "in_progress", "_requests", "_duration", "_labels")

    def __init__(self, metrics: Any, labels: dict[str, str]) -> None:
        self._requests, self._duration, self._labels = (
            metrics.requests,
            metrics.request_seconds,
            labels,
        )
        self.codes: dict[int, tuple[Any, Any]] = {}
        self.in_progress = metrics.in_progress.labels(**labels)
        for code in (200, 500):  # present from the start, so rate() has a first sample
            self.child(code)

    def child(self, code: int) -> tuple[Any, Any]:
        pair = self.codes.get(code)
        if pair is None:
            labels = {**self._labels, "http_response_code": str(code)}
            pair = self.codes[code] = (
                self._requests.labels(**labels),
                self._duration.labels(**labels),
            )
        return pair


class Edge:
    """ASGI middleware; `metrics` is a callable giving the worker's Metrics (created in the
    service's __init__, after BentoML set up prometheus), `routes` the paths served."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Callable[[], Any],
        routes: Iterable[str],
        config: EdgeConfig | None = None,
    ) -> None:
        self.app = app
        self._get_metrics = metrics
        self._route_names = frozenset(routes)
        self.config = config or EdgeConfig.from_env()
        self._routes: dict[str, _Route] | None = None
        self._last: Any = None
        self.active = 0

    def _setup(self) -> dict[str, _Route]:
        from bentoml import server_context

        metrics = self._get_metrics()
        common = {
            "service_name": server_context.bento_name or "ml-assets",
            "service_version": server_context.bento_version,
            "runner_name": server_context.service_name or "ml-assets",
        }
        self._last = metrics.last_request.labels(**common)
        self._routes = {
            name: _Route(metrics, {"endpoint": name, **common})
            for name in (*self._route_names, OTHER)
        }
        return self._routes

    def _authorized(self, scope: Scope) -> tuple[bool, bytes | None]:
        keys = self.config.keys
        if not keys:
            return True, None
        key = presented_key(scope)
        return key is not None and any(hmac.compare_digest(key, k) for k in keys), key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PROBES:
            await self.app(scope, receive, send)
            return
        authorized, key = self._authorized(scope)
        if path in UNMETERED:  # /metrics: guarded by the key, not counted as traffic
            if authorized:
                await self.app(scope, receive, send)
            else:
                await self._refuse_key(key, receive, send)
            return
        routes = self._routes or self._setup()
        route = routes.get(path) or routes[OTHER]
        start = time.perf_counter()
        status = 500
        route.in_progress.inc()
        self._last.set(time.time())

        async def metered_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        cap = self.config.max_concurrency
        try:
            if not authorized:
                await self._refuse_key(key, receive, metered_send)
            elif cap is not None and self.active >= cap:
                await self._too_many(receive, metered_send)
            else:
                self.active += 1
                try:
                    await self.app(scope, receive, metered_send)
                finally:
                    self.active -= 1
        finally:
            route.in_progress.dec()
            total, seconds = route.child(status)
            total.inc()
            seconds.observe(time.perf_counter() - start)

    async def _refuse_key(self, key: bytes | None, receive: Receive, send: Send) -> None:
        if key is None:
            start, body = _json(
                401,
                "this server requires an API key: send it in the X-API-Key header "
                "(or Authorization: Bearer)",
                [(b"www-authenticate", b'Bearer realm="ml-assets"')],
            )
        else:
            start, body = _json(403, "wrong API key")
        await _drain(receive)
        await send(start)
        await send(body)

    async def _too_many(self, receive: Receive, send: Send) -> None:
        cap, wait = self.config.max_concurrency, self.config.retry_after_s
        start, body = _json(
            429,
            f"this worker is at its limit of {cap} concurrent requests "
            f"(ML_SERVING_MAX_CONCURRENCY); retry after {wait} s",
            [(b"retry-after", str(wait).encode())],
        )
        await _drain(receive)
        await send(start)
        await send(body)


async def _drain(receive: Receive) -> None:
    """Read (and drop) the request body, up to the body limit: a server that closes on unread
    data resets the connection before the client reads the answer."""
    limit, drained, more = max_body_bytes(), 0, True
    while more and drained <= limit:
        message = await receive()
        drained += len(message.get("body", b""))
        more = message["type"] == "http.request" and bool(message.get("more_body"))
