"""The served OpenAPI document (GET /docs.json): BentoML's, with each route's real errors.

BentoML declares 400/404/500 on every API with a `detail` string that no response carries,
and leaves every request body optional. Here every API declares the statuses it can return and
the one error body they all have after serving/errors.py, `{"error": str, "detail"?: [...]}`;
a body with required fields is required; /reload declares its API key and what its `bundle`
must be; GET /models is described. A route's own errors are listed in ROUTE_ERRORS
(serving/openapi_parts.py, with the schemas and the per-model routes): a new
`raise` in serving/service.py with another status belongs there too (tests/test_serving/
runs schemathesis against a served Bento).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Hashable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving import card_routes, feedback_routes
from serving.errors import max_body_bytes
from serving.openapi_parts import (
    BENTOML_ERROR_SCHEMAS,
    KEYED_ERRORS,
    MODELS_PATH,
    NOT_READY,
    PREDICT_ERRORS,
    PREDICT_PREFIX,
    REF,
    REQUEST_PROPERTIES,
    ROUTE_ERRORS,
    SCHEMAS,
    SECURED,
    SECURITY_SCHEMES,
    card_path,
    common_errors,
    error_response,
    feedback_path,
)


def _request_body(doc: dict[str, Any], path: str, operation: dict[str, Any]) -> None:
    body = operation.get("requestBody")
    if not body:
        return
    schema = body["content"]["application/json"]["schema"]
    if ref := schema.get("$ref"):
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    # BentoML leaves the body optional; without it, a route with required fields answers 400.
    if schema.get("required"):
        body["required"] = True
    for name, declared in REQUEST_PROPERTIES.get(path, {}).items():
        if name in schema.get("properties", {}):
            schema["properties"][name] = copy.deepcopy(declared)


def document(
    spec: dict[str, Any],
    *,
    limit: int,
    keyed: bool = False,
    cards: list[str] | None = None,
    feedback: list[str] | None = None,
) -> dict[str, Any]:
    """BentoML's spec (as a dict) with the errors each API route really returns; `keyed`: every
    route needs the client key (ML_SERVING_REQUIRE_KEY=1); `cards`: the models whose card
    GET /v1/models/{name}/card serves; `feedback`: the lineages that take labels (None: the
    inference log is off)."""
    doc = copy.deepcopy(spec)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(SCHEMAS))
    doc["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, item in doc["paths"].items():
        operation = item.get("post")
        if not operation or "x-bentoml-name" not in operation:
            continue
        _request_body(doc, path, operation)
        responses = operation["responses"]
        ok = responses.get("200", responses.get(200))
        predict = path.startswith(PREDICT_PREFIX)
        errors = {
            **common_errors(limit),
            **(KEYED_ERRORS if keyed else {}),
            **ROUTE_ERRORS.get(path, PREDICT_ERRORS if predict else {}),
        }
        operation["responses"] = {
            "200": ok,
            **{code: error_response(code, text, predict) for code, text in sorted(errors.items())},
        }
        if path in SECURED or keyed:
            operation["security"] = SECURED["/reload"]
    if readyz := doc["paths"].get("/readyz", {}).get("get"):
        readyz["responses"]["503"] = NOT_READY
    doc["paths"]["/models"] = copy.deepcopy(MODELS_PATH)
    if cards:
        doc["paths"][card_routes.ROUTE] = card_path(cards, keyed)
    if feedback:
        doc["paths"][feedback_routes.PATH], defs = feedback_path(feedback, limit, keyed)
        schemas.update(defs)
    text = json.dumps(doc)
    for name in BENTOML_ERROR_SCHEMAS:
        if json.dumps(REF.format(name)) not in text:
            schemas.pop(name, None)
    return doc


def with_lineage_routes(
    spec: dict[str, Any], dropped: list[str], methods: dict[str, Any]
) -> dict[str, Any]:
    """BentoML's spec (a dict) with the routes of lineages a reload dropped taken out and those
    of the lineages it brought (their API methods, serving/lineage_path.py) put in, described
    as BentoML describes its own routes."""
    if not dropped and not methods:
        return spec
    from bentoml._internal.utils.cattr import bentoml_cattr

    out = copy.deepcopy(spec)
    for route in dropped:
        out["paths"].pop(route, None)
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    for name, api in methods.items():
        operation = {
            "responses": {200: api.openapi_response()},
            "tags": ["Service APIs"],
            "x-bentoml-name": name,
            "description": api.doc or "",
            "requestBody": api.openapi_request(),
            "operationId": f"{out.get('info', {}).get('title', 'ml-assets')}__{name}",
        }
        out["paths"][api.route] = {"post": bentoml_cattr.unstructure(operation)}
        for part in (api.input_spec, api.output_spec):
            schemas.update(bentoml_cattr.unstructure(part.openapi_components(name)))
    return out


def docs_route(
    service: Any,
    *,
    limit: int | None = None,
    keyed: bool = False,
    lineages: Callable[[], tuple[Hashable, list[str], dict[str, Any]]] | None = None,
    models: Callable[[], tuple[list[str], list[str] | None]] | None = None,
) -> Route:
    """GET /docs.json: `document()` of a bentoml Service's spec, built once per worker and
    served generation; `limit` is the body limit of its UniformErrors (default:
    ML_SERVING_MAX_BODY_BYTES); `lineages` says which lineage routes the current generation
    drops and adds (serving/lineage_path.docs_view); `models`: (the names with a card, the
    lineages that take feedback or None) of the current generation."""

    @functools.lru_cache(maxsize=8)
    def body(key: Hashable, cards: tuple[str, ...], feedback: tuple[str, ...] | None) -> bytes:
        spec = service.openapi_spec.asdict()
        if lineages is not None:
            _, dropped, methods = lineages()
            spec = with_lineage_routes(spec, dropped, methods)
        size = max_body_bytes() if limit is None else limit
        listed = None if feedback is None else list(feedback)
        doc = document(spec, limit=size, keyed=keyed, cards=list(cards), feedback=listed)
        return json.dumps(doc).encode()

    async def docs(_: Request) -> Response:
        key = lineages()[0] if lineages is not None else ()
        cards, feedback = models() if models is not None else ([], None)
        served = (tuple(cards), None if feedback is None else tuple(feedback))
        return Response(body(key, *served), media_type="application/json")

    return Route("/docs.json", docs, methods=["GET"])
