"""The pieces of the served OpenAPI document (serving/openapi.py puts them together): the
component schemas, each route's errors, GET /models, and the routes per served model (its card,
its label feedback).
"""

from __future__ import annotations

import copy
from typing import Any

from ml_assets.platform.gate_record import GATE_RECORD_SCHEMA
from ml_assets.platform.serving_bundle import BUNDLE_SCHEMA, ENTRY_SCHEMA
from serving import feedback_routes

REF = "#/components/schemas/{}"
MASKED = (
    'BentoML replaces the message with "An unexpected error has occurred, please check the '
    'server log."'
)
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "title": "Error",
        "description": "Every error body of the API routes.",
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {
            "error": {"title": "Message", "type": "string"},
            "detail": {
                "title": "Validation errors (400 only)",
                "type": "array",
                "items": {"$ref": REF.format("ValidationIssue")},
            },
        },
    },
    "ValidationIssue": {
        "title": "ValidationIssue",
        "description": "One problem with the request body, as pydantic reports it.",
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "loc", "msg"],
        "properties": {
            "type": {"type": "string"},
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "url": {"type": "string"},
        },
    },
}
# /reload's `bundle` is typed dict[str, Any] in the service, but only a manifest is accepted:
# declare what entries_of() reads, so a body valid here is one the route can judge (200/409).
SCHEMAS["ServingBundle"] = {
    "title": "ServingBundle",
    "description": "The serving_bundle manifest (bundle.json) of the production versions.",
    "type": "object",
    "required": ["schema", "models"],
    "properties": {
        "schema": {"type": "string", "enum": [BUNDLE_SCHEMA]},
        "models": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"$ref": REF.format("BundledModel")},
        },
        "search": {"type": "object"},
        "lineages": {
            "type": "object",
            "description": "Every declared lineage, served or not (and why not).",
            "additionalProperties": {
                "type": "object",
                "required": ["served"],
                "properties": {
                    "served": {"type": "boolean"},
                    "registered_model": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_TEXT, _OBJECT, _BOOL = {"type": "string"}, {"type": "object"}, {"type": "boolean"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": kind, "nullable": True}


def _closed(title: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with exactly `properties`, each required (what the contracts' from_json read:
    ml_assets/schemas/ml.bundle.entry.v1.json and ml.gate.record.v1.json)."""
    return {
        "title": title,
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
        **extra,
    }


_VERDICT = _closed(
    "RecordedVerdict",
    {
        "asset": _TEXT,
        "check": _TEXT,
        "data_version": _nullable("string"),
        "passed": _nullable("boolean"),
        "run_id": _nullable("string"),
        "evaluation_id": _nullable("integer"),
        "evaluated_at": _nullable("number"),
        "target_storage_id": _nullable("integer"),
        "origin": _closed(
            "Origin",
            {
                "run_id": _TEXT,
                **{k: _nullable("string") for k in ("step", "job", "status", "location")},
            },
            nullable=True,
        ),
    },
)
SCHEMAS["GateRecord"] = _closed(
    "GateRecord",
    {
        "schema": {"type": "string", "enum": [GATE_RECORD_SCHEMA]},
        "approved": _BOOL,
        "evaluated_at": _TEXT,
        "gates": {
            "type": "array",
            "items": _closed("Gate", {"name": _TEXT, "passed": _BOOL, "detail": _TEXT}),
        },
        "verdicts": {"type": "array", "items": _VERDICT},
        "evidence": _OBJECT,
        "records_used": {"type": "array", "items": _TEXT},
        "records_ignored": {"type": "array", "items": _TEXT},
        "margin": _closed(
            "Margin", {"value": {"type": "number"}, "relative": _BOOL, "source": _TEXT}
        ),
        "source": _TEXT,
    },
    description="The promotion gate's record of one version (a versioned gate record).",
)
SCHEMAS["BundledModel"] = _closed(
    "BundledModel",
    {
        "schema": {"type": "string", "enum": [ENTRY_SCHEMA]},
        "role": _TEXT,
        "registered_model": _TEXT,
        "version": _TEXT,
        "files": {"type": "object", "additionalProperties": _TEXT},
        "provenance": {"type": "array", "items": _OBJECT},
        "info": _OBJECT,
        "gate": {"anyOf": [{"$ref": REF.format("GateRecord")}, {"type": "null"}]},
    },
    description="One model of the bundle (a versioned bundle entry).",
)
REQUEST_PROPERTIES = {
    "/reload": {
        "bundle": {
            "anyOf": [{"$ref": REF.format("ServingBundle")}, {"type": "null"}],
            "default": None,
            "description": "The serving_bundle manifest of the production versions "
            "(serving_deployment sends it): its validated search configuration is served.",
        }
    }
}
BENTOML_ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")
AUTH_BODY = 'The body is {"error": "Authorization error"} (BentoML hides the message).'


def common_errors(limit: int) -> dict[str, str]:
    """What every API route can answer besides 200."""
    return {
        "400": "The body is not JSON or does not match the request schema: `error` counts the "
        "problems, `detail` lists them.",
        "413": f"The body is over {limit} bytes (ML_SERVING_MAX_BODY_BYTES).",
        "415": "The body is not application/json.",
        "429": "This worker is at its concurrency cap (ML_SERVING_MAX_CONCURRENCY): retry after "
        "the seconds in the Retry-After header.",
        "500": f"An unexpected error. {MASKED}",
        "503": f"The models are not loaded (GET /models says why). {MASKED}",
        "504": "Not answered within the service's traffic timeout (ML_SERVING_TIMEOUT_S).",
    }


ROUTE_ERRORS: dict[str, dict[str, str]] = {
    "/embed": {
        "429": "This worker is at its concurrency cap (ML_SERVING_MAX_CONCURRENCY), or its "
        "embedding queue is full (ML_SERVING_EMBED_QUEUE_TEXTS) or behind by more than "
        "ML_SERVING_EMBED_MAX_LATENCY_MS: retry after the seconds in the Retry-After header.",
    },
    "/search": {
        "400": "The body is not JSON or does not match the request schema (`detail` lists the "
        "problems), or the search rejects its filters (`error` says why).",
        "404": "No such tenant_id.",
        "503": "Search is not served (no search_quality_report passed for the served embedder: "
        "`error` holds the reason GET /models shows), there is no live index yet, the live index "
        "was built with another embedder than this server's, or the search database is "
        "unreachable (ML_VECTOR_PG_DSN): retry after the seconds in the Retry-After header. Or "
        f"the models are not loaded (GET /models says why; {MASKED})",
    },
    "/reload": {
        "400": "The body is not JSON or does not match the request schema (`detail` lists the "
        "problems), or `bundle` is not a serving bundle manifest (`error` says why).",
        "401": f"No API key: send X-API-Key (or Authorization: Bearer). {AUTH_BODY}",
        "403": "A wrong API key, or reload is disabled (the server runs without "
        f"ML_SERVING_API_KEY). {AUTH_BODY}",
        "409": "Refused, the current versions keep serving: a production version is not in "
        "this server's model store yet (build it with serving_job), `bundle` pins other "
        "versions than production (or a model with no production version), or a bundled "
        "model fails its checks at load.",
        "503": "The registry cannot say which versions are in production, or a bundled model "
        f"fails its sha256 check. {MASKED}",
    },
}
# /v1/models/<name>/predict(/batch): a route of any lineage the served generation has.
PREDICT_PREFIX = "/v1/models/"
PREDICT_ERRORS = {
    "404": "The model is not served (a reload dropped it): `error` lists the declared lineages.",
    "503": "This lineage is declared but not served yet (no validated production version): "
    "`error` says why; retry after the seconds in the Retry-After header. Or the models are not "
    "loaded (GET /models says why; BentoML masks that message).",
}
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}
SECURED = {"/reload": [{"ApiKey": []}, {"Bearer": []}]}
# With ML_SERVING_REQUIRE_KEY=1 every route needs a key (serving/edge.py).
KEYED_ERRORS = {
    "401": "No API key (the server runs with ML_SERVING_REQUIRE_KEY=1): send X-API-Key (or "
    "Authorization: Bearer).",
    "403": "A wrong API key.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
MODELS_PATH = {
    "get": {
        "tags": ["Infrastructure"],
        "description": "What this worker serves: each model's registered version, sha256s, "
        "provenance and validation verdicts, or why it is not ready.",
        "responses": {
            "200": {
                "description": "Successful Response",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["ready"],
                            "properties": {"ready": {"type": "boolean"}},
                        }
                    }
                },
            }
        },
    }
}
_CARD_HEADERS = {
    "X-Card-SHA256": {
        "description": "The card's sha256, as the bundle manifest pins it",
        "schema": _TEXT,
    },
    "X-Model-Version": {
        "description": "The registered version the card describes",
        "schema": _TEXT,
    },
}
_NAME_DOC = "A model this worker serves: a lineage's name, or the embedder's registered model."


def _name_parameter(names: list[str], description: str) -> dict[str, Any]:
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "enum": sorted(names)},
    }


def _errors(texts: dict[str, str], retry: tuple[str, ...] = ("429", "503")) -> dict[str, Any]:
    out = {}
    for code, text in sorted(texts.items()):
        out[code] = error_response(code, text)
        if code in retry:
            out[code]["headers"] = copy.deepcopy(RETRY_AFTER)
    return out


def card_path(names: list[str], keyed: bool) -> dict[str, Any]:
    """GET /v1/models/{name}/card (serving/card_routes.py) for the models in `names`."""
    path = {
        "get": {
            "tags": ["Infrastructure"],
            "operationId": "model_card",
            "description": "The model card of the version this worker serves: Markdown, or "
            "JSON with `Accept: application/json`; checked against the sha256 the bundle "
            "manifest pins (X-Card-SHA256).",
            "parameters": [_name_parameter(names, _NAME_DOC)],
            "responses": {
                "200": {
                    "description": "The card",
                    "headers": copy.deepcopy(_CARD_HEADERS),
                    "content": {
                        "text/markdown": {"schema": {"type": "string"}},
                        "application/json": {
                            "schema": _closed(
                                "ModelCard",
                                {"model_version": _TEXT, "sha256": _TEXT, "card": _OBJECT},
                            )
                        },
                    },
                },
                **_errors(
                    {
                        "404": "The model is not served (a reload dropped it), or its "
                        "bundle carries no card: `error` says which.",
                        "429": "This worker is at its concurrency cap "
                        "(ML_SERVING_MAX_CONCURRENCY): retry after the seconds in the "
                        "Retry-After header.",
                        "500": "The card's bytes do not hash to the sha256 its manifest pins.",
                        "503": "The models are not loaded, or the lineage is declared but not "
                        "served yet: `error` says why; retry after Retry-After.",
                        **(KEYED_ERRORS if keyed else {}),
                    }
                ),
            },
        }
    }
    # A name the router cannot take as a path segment (a control character, bytes that are no
    # UTF-8) never reaches the route: the router answers its own plain-text 404 (schemathesis).
    path["get"]["responses"]["404"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return path


def feedback_path(names: list[str], limit: int, keyed: bool) -> dict[str, Any]:
    """POST /v1/models/{name}/feedback (serving/feedback_routes.py) for the lineages in
    `names`: declared only while the inference log is on (without it every label is a 503)."""
    body = feedback_routes.BODY.json_schema(ref_template=REF.format("{model}"))
    defs = body.pop("$defs", {})
    return {
        "post": {
            "tags": ["Service APIs"],
            "operationId": "model_feedback",
            "description": "The true label of a logged scoring request (X-Request-ID), one or "
            "a batch; stored beside the inference log.",
            "parameters": [_name_parameter(names, "A lineage this worker serves.")],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}},
            },
            "responses": {
                "200": {
                    "description": "Stored (a label sent again counts as a duplicate)",
                    "content": {
                        "application/json": {
                            "schema": _closed(
                                "FeedbackStored",
                                {"stored": {"type": "integer"}, "duplicates": {"type": "integer"}},
                            )
                        }
                    },
                },
                **_errors(
                    {
                        **common_errors(limit),
                        "400": "The body is not feedback (`detail` lists the problems), or a "
                        "label does not fit the lineage's task.",
                        "404": "The model is not served, or a request id is not in its inference "
                        "log (not sampled, not written yet, past retention); nothing is stored.",
                        "409": "A row is already labelled otherwise; nothing is stored.",
                        "503": "The inference log's Postgres is unreachable.",
                        **(KEYED_ERRORS if keyed else {}),
                    }
                ),
            },
        }
    }, defs


NOT_READY = {
    "description": "Not ready: the models are not loaded (GET /models says why).",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}


def error_response(code: str, description: str, predict: bool = False) -> dict[str, Any]:
    response = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format("Error")}}},
    }
    if code == "429" or (predict and code == "503"):
        response["headers"] = copy.deepcopy(RETRY_AFTER)
    return response
