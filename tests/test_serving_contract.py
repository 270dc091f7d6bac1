"""The error contract of the API, in process: the body every error has (serving/errors.py) and
the OpenAPI document that declares it (serving/openapi.py), on a BentoML service of the same
shape as serving/service.py (its real routes are checked against a served Bento in
tests/test_serving/test_8_openapi.py)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
import jsonschema
import pytest
from bentoml.exceptions import BentoMLException, NotFound, ServiceUnavailable
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.testclient import TestClient

from serving import errors, openapi

LIMIT = 4096


class Hits(BaseModel):
    tenant_id: str
    limit: int


@bentoml.service(name="contract-probe")
class Probe:
    @bentoml.api(route="/search")
    def search(
        self,
        query: Annotated[str, Field(min_length=1)],
        tenant_id: str,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
    ) -> Hits:
        if tenant_id == "down":
            raise ServiceUnavailable("the search database is unavailable")
        if tenant_id != "acme":
            raise NotFound(f"unknown tenant {tenant_id!r}")
        return Hits(tenant_id=tenant_id, limit=limit)

    @bentoml.api(route="/reload")
    def reload(self, ctx: bentoml.Context, bundle: dict[str, Any] | None = None) -> dict[str, Any]:
        key = ctx.request.headers.get("x-api-key")
        if not key:
            raise BentoMLException("no key", error_code=HTTPStatus.UNAUTHORIZED)
        if key == "stale":
            raise BentoMLException("not bundled yet", error_code=HTTPStatus.CONFLICT)
        return {"changed": False}


Probe.add_asgi_middleware(errors.UniformErrors, limit=LIMIT)
Probe.mount_asgi_app(Starlette(routes=[openapi.docs_route(Probe, limit=LIMIT)]), path="/")


@pytest.fixture(scope="module")
def client():
    with TestClient(Probe.to_asgi()) as c:
        yield c


def _declared(doc: dict, path: str, status: int) -> dict:
    """The schema the document declares for one response, with its components to resolve."""
    response = doc["paths"][path]["post"]["responses"][str(status)]
    return {**response["content"]["application/json"]["schema"], "components": doc["components"]}


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/search", {"json": {"query": "", "tenant_id": "acme"}}, 400),  # pydantic: detail list
        (
            "/search",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
        ),
        ("/search", {"json": {"query": "gas", "tenant_id": "nobody"}}, 404),  # BentoML: [{...}]
        ("/search", {"json": {"query": "gas", "tenant_id": "down"}}, 503),  # masked by BentoML
        ("/search", {"json": {"query": "x" * LIMIT, "tenant_id": "acme"}}, 413),
        ("/search", {"content": b"{}", "headers": {"content-type": "multipart/form-data"}}, 415),
        ("/search", {"data": {"query": "gas"}}, 415),  # a form, not JSON
        ("/reload", {"json": {}}, 401),
        ("/reload", {"json": {}, "headers": {"x-api-key": "stale"}}, 409),
    ],
)
def test_every_error_body_is_the_declared_one(client, path, kwargs, status):
    doc = client.get("/docs.json").json()
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, dict) and body["error"], body
    jsonschema.validate(body, _declared(doc, path, status))
    assert int(r.headers["content-length"]) == len(r.content)


def test_chunked_bodies_are_limited_and_passed_on_whole(client):
    small = json.dumps({"query": "gas", "tenant_id": "acme", "limit": 3}).encode()
    r = client.post("/search", content=iter([small[:7], small[7:]]))
    assert r.status_code == 200 and r.json() == {"tenant_id": "acme", "limit": 3}
    big = json.dumps({"query": "x" * LIMIT, "tenant_id": "acme"}).encode()
    r = client.post("/search", content=iter([big[:100], big[100:]]))
    assert r.status_code == 413 and f"{LIMIT} bytes" in r.json()["error"]


def test_document_declares_each_routes_errors(client):
    doc = client.get("/docs.json").json()
    search = doc["paths"]["/search"]["post"]
    reload = doc["paths"]["/reload"]["post"]
    common = {"200", "400", "413", "415", "429", "500", "503", "504"}
    assert set(search["responses"]) == common | {"404"}
    assert set(reload["responses"]) == common | {"401", "403", "409"}
    assert reload["security"] and "ApiKey" in doc["components"]["securitySchemes"]
    assert "security" not in search  # only with ML_SERVING_REQUIRE_KEY=1
    assert "Retry-After" in search["responses"]["429"]["headers"]
    # A body with required fields is required; /reload's is optional, its bundle a manifest.
    assert search["requestBody"]["required"] is True and "required" not in reload["requestBody"]
    bundle = reload["requestBody"]["content"]["application/json"]["schema"]["properties"]["bundle"]
    assert {"$ref": "#/components/schemas/ServingBundle"} in bundle["anyOf"]
    assert f"over {LIMIT} bytes" in search["responses"]["413"]["description"]
    # BentoML's own error components (a `detail` string nobody sends) are gone.
    assert not {"InvalidArgument", "NotFound", "InternalServerError"} & set(
        doc["components"]["schemas"]
    )
    assert "/models" in doc["paths"] and "503" in doc["paths"]["/readyz"]["get"]["responses"]


def test_a_keyed_document_declares_the_key_on_every_route():
    doc = openapi.document(Probe.openapi_spec.asdict(), limit=LIMIT, keyed=True)
    search = doc["paths"]["/search"]["post"]
    assert {"401", "403"} <= set(search["responses"]) and search["security"]


def test_the_card_and_feedback_routes_are_declared_for_the_models_served():
    from serving.feedback_routes import BODY

    base = Probe.openapi_spec.asdict()
    assert "/v1/models/{name}/card" not in openapi.document(base, limit=LIMIT)["paths"]
    doc = openapi.document(base, limit=LIMIT, cards=["fraud", "text-embedder"], feedback=None)
    card = doc["paths"]["/v1/models/{name}/card"]["get"]
    assert card["parameters"][0]["schema"]["enum"] == ["fraud", "text-embedder"]
    assert set(card["responses"]["200"]["content"]) == {"text/markdown", "application/json"}
    assert {"404", "500", "503"} <= set(card["responses"])
    assert "Retry-After" in card["responses"]["503"]["headers"]
    # The inference log off: no feedback route (every label would be a 503).
    assert "/v1/models/{name}/feedback" not in doc["paths"]
    doc = openapi.document(base, limit=LIMIT, cards=["fraud"], feedback=["fraud"], keyed=True)
    feedback = doc["paths"]["/v1/models/{name}/feedback"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "413", "415", "503"} <= set(
        feedback["responses"]
    )
    # The declared body accepts what the route accepts, and refuses what it refuses.
    body = {**feedback["requestBody"]["content"]["application/json"]["schema"], **doc}
    for item in ({"request_id": "r1", "label": 1}, [{"request_id": "r1", "label": 0.5}]):
        jsonschema.validate(item, body)
        BODY.validate_python(item)
    for bad in ({"request_id": "", "label": 1}, [], {"request_id": "r", "label": 1, "x": 2}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"error": "no such tenant"}]', b'{"error": "no such tenant"}'),
        (b'{"error": "x", "detail": []}', b'{"error": "x", "detail": []}'),
        (b'[{"error": 1}]', b'[{"error": 1}]'),
        (b"[1, 2]", b"[1, 2]"),
        (b"not json", b"not json"),
    ],
)
def test_uniform_body(body, expected):
    assert errors.uniform_body(body) == expected
