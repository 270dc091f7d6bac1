"""POST /v1/score without BentoML's per-request machinery (routing, serde, context, the
three-part response): the hot path of the service, served from inside its ASGI middleware.

Nothing of the contract changes: the body is validated by the very input model BentoML built for
the `score` API (so the 400 body is BentoML's, field by field), the service's own `score_one`
answers, and the response is the API's `ScoreResult`. The OpenAPI document and BentoML's
clients still describe and call the `score` API; `ML_SERVING_LEAN_SCORE=0` serves it through
BentoML instead (the benchmark compares the two).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from serving.errors import ASGIApp, Receive, Scope, Send

log = logging.getLogger("bentoml.ml_assets")
JSON_HEADERS = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validation_error(exc: Any) -> bytes:
    """A pydantic ValidationError as BentoML's 400 body: `error` counts, `detail` lists."""
    error = {
        "error": f"{exc.error_count()} validation error for {exc.title}",
        "detail": exc.errors(include_context=False, include_input=False),
    }
    return json.dumps(error).encode()


async def parsed(receive: Receive, send: Send, model: Any) -> Any | None:
    """The request body validated by the pydantic `model`; None once the request is over (the
    client went away, or it was answered 400 with BentoML's body)."""
    from pydantic import ValidationError

    body = await read_body(receive)
    if body is None:
        return None
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        await respond(send, HTTPStatus.BAD_REQUEST, validation_error(exc))
        return None


async def answer(send: Send, call: Any, label: str) -> None:
    """Run `call()` (a service method) and send its pydantic result, or the error it raised
    with its status (BentoML's exceptions) or as a 500 the log explains."""
    from bentoml.exceptions import BentoMLException

    try:
        result = call()
        if hasattr(result, "__await__"):
            result = await result
    except BentoMLException as exc:
        status = exc.error_code.value
        await respond(send, status, json.dumps({"error": str(exc)}).encode())
        return
    except Exception:
        log.exception("%s failed", label)
        error = {"error": "An unexpected error has occurred, please check the server log."}
        await respond(send, HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps(error).encode())
        return
    await respond(send, HTTPStatus.OK, result.model_dump_json().encode())


class LeanScore:
    """ASGI middleware answering POST `route` with `service.<method>(<argument>)` of the
    current service instance; every other request goes on to BentoML."""

    def __init__(
        self, app: ASGIApp, service: Any, route: str, api: str, method: str, argument: str
    ) -> None:
        self.app = app
        self.route, self.method, self.argument = route, method, argument
        self.input_model = service.apis[api].input_spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.route or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        from bentoml import get_current_service

        data = await parsed(receive, send, self.input_model)
        if data is None:
            return
        instance = get_current_service()
        method = getattr(instance, self.method)
        await answer(send, lambda: method(getattr(data, self.argument)), self.route)
