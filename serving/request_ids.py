"""A request id for every scoring request, returned in the `X-Request-ID` response header and
recorded with the request in the inference log (serving/inference_log.py), so a client can send
a label for it later (POST /v1/models/<name>/feedback).

An ASGI middleware sets it in a context variable before the request goes on; the code that
scores reads it there (the event loop's task, or the worker thread a sync API hops to: both
copy the context)."""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from serving.errors import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
SCORING_PREFIXES = ("/v1/score", "/v1/models/")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    started: float  # time.perf_counter() when the request reached the service


_CURRENT: ContextVar[RequestContext | None] = ContextVar("ml_assets_request", default=None)


def current() -> RequestContext | None:
    """The scoring request being served, or None outside one (in-process calls, tests)."""
    return _CURRENT.get()


class RequestIds:
    """ASGI middleware: a fresh id per POST to a scoring route, in the context and the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(SCORING_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        # Ours, never the client's: the id is the key labels come back with.
        ctx = RequestContext(uuid.uuid4().hex, time.perf_counter())
        header = ctx.request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (HEADER, header)]}
            await send(message)

        token = _CURRENT.set(ctx)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _CURRENT.reset(token)
