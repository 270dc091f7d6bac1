"""One error body for every API error, `{"error": str, "detail"?: [...]}`, and the request checks
BentoML does not make: a JSON body (415) of bounded size (413).

BentoML 1.4 answers a BentoMLException under 500 (other than 401/403) with the message wrapped
in a one-element JSON array, `[{"error": ...}]`, next to `{"error": ..., "detail": [...]}` for a
validation error and `{"error": ...}` for 401/403/5xx. This ASGI middleware unwraps the array,
so clients and the OpenAPI document (serving/openapi.py) see one shape. It refuses a body over
ML_SERVING_MAX_BODY_BYTES before BentoML reads it into memory, and a body that is not JSON
before BentoML's form parser fails on it with a 500 (multipart/form-data without a boundary).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The largest valid /embed request (256 texts of 20,000 characters) is ~5 MB of ASCII JSON and
# up to 4x that escaped; a batch of 1,000 transactions is ~0.3 MB.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
JSON = b"application/json"
WITH_BODY = ("POST", "PUT", "PATCH")


def max_body_bytes() -> int:
    """The request-body limit: ML_SERVING_MAX_BODY_BYTES, else 32 MiB."""
    value = os.environ.get("ML_SERVING_MAX_BODY_BYTES")
    return int(value) if value else DEFAULT_MAX_BODY_BYTES


def uniform_body(body: bytes) -> bytes:
    """BentoML's `[{"error": ...}]` as `{"error": ...}`; any other body unchanged."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        if isinstance(data[0].get("error"), str):
            return json.dumps(data[0]).encode()
    return body


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class UniformErrors:
    """ASGI middleware: 415 for a body that is not JSON, 413 for one over the limit, and every
    JSON error body one object."""

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self.limit = max_body_bytes() if limit is None else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send)  # the API routes are all POST
            return
        content_type = _header(scope, b"content-type")
        if content_type is not None and content_type.split(b";")[0].strip().lower() != JSON:
            await self._refuse(receive, send, 415, "send the request body as application/json")
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(receive, send, 413, self._too_large(f"{int(declared)} bytes"))
            return
        if declared is None:
            # Chunked: read it here (up to the limit) and hand the app the whole body.
            chunks: list[bytes] = []
            received = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                received += len(chunks[-1])
                if received > self.limit:
                    error = self._too_large(f"over {self.limit} bytes")
                    await self._refuse(receive, send, 413, error, bool(message.get("more_body")))
                    return
                if not message.get("more_body"):
                    break
            receive = _replay(b"".join(chunks), receive)
        await self.app(scope, receive, _UnwrapErrors(send))

    def _too_large(self, size: str) -> str:
        return (
            f"the request body is {size}; the limit is {self.limit} bytes "
            "(ML_SERVING_MAX_BODY_BYTES)"
        )

    async def _refuse(
        self, receive: Receive, send: Send, status: int, error: str, more: bool = True
    ) -> None:
        # Read (and drop) what the client is still sending, up to the limit once more: a server
        # that closes on unread data resets the connection before the client reads the answer.
        drained = 0
        while more and drained <= self.limit:
            message = await receive()
            drained += len(message.get("body", b""))
            more = message["type"] == "http.request" and bool(message.get("more_body"))
        data = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", JSON),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class _UnwrapErrors:
    """A `send` that holds a JSON error response until its body is complete, then unwraps it."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", ())).get(b"content-type", b"")
            if message["status"] >= 400 and content_type.startswith(JSON):
                self.start = message
                return
        elif self.start is not None and message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = uniform_body(b"".join(self.chunks))
            headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await self.send({**self.start, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)


class Unavailable(Exception):
    """A refusal the client can wait out: 503 with `Retry-After` and the reason in the body.

    Raising BentoML's ServiceUnavailable would hide the reason (any 5xx becomes "An unexpected
    error has occurred") and log a traceback for what is a state, not a fault."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason, self.retry_after_s = reason, retry_after_s

    def response(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(
            {"error": self.reason},
            status_code=503,
            headers={"Retry-After": str(self.retry_after_s)},
        )
