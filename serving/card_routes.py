"""GET /v1/models/<name>/card: the model card of the version this worker serves for a lineage
(its name) or of the text embedder (its registered model's name).

Markdown by default, JSON with `Accept: application/json`. The card is the one the bundle
carries in the model's entry, checked against the sha256 the entry pins before it is answered
(an `X-Card-SHA256` header says which). A declared lineage that is not served yet answers 503
with the reason, any other name 404 (as its predict routes do).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ml_assets.platform.model_card import CardIntegrityError, card_markdown, verified
from ml_assets.platform.serving_bundle import EMBEDDER
from serving import lineage_path

ROUTE = "/v1/models/{name}/card"


def _error(status: int, message: str, retry: bool = False) -> JSONResponse:
    headers = {"retry-after": str(lineage_path.RETRY_AFTER_S)} if retry else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def wants_json(accept: str) -> bool:
    """True when the client asks for JSON (and not Markdown or text first)."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in kinds and not any(
        k in ("text/markdown", "text/plain") for k in kinds[: kinds.index("application/json")]
    )


def _role_of(models: Any, name: str) -> str | None:
    """The role whose card `name` asks for: a served lineage's name, or the embedder's
    registered model (the name its versions carry in MLflow and on /embed)."""
    served = models.lineage(name)
    if served is not None:
        return served[0]
    embedder = models.entries.get(EMBEDDER)
    return EMBEDDER if embedder is not None and embedder.registered_model == name else None


def card_names(models: Any) -> list[str]:
    """The names GET /v1/models/<name>/card answers 200 for in the generation `models`."""
    names = [spec.name for spec in models.specs.values()]
    if EMBEDDER in models.entries:
        names.append(models.entries[EMBEDDER].registered_model)
    return sorted(n for n in names if "card" in models.entries[_role_of(models, n)].info)


async def card(request: Request) -> Response:
    name = request.path_params["name"]
    models = bentoml.get_current_service()._models
    if models is None:
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, "the service has not loaded its models", True)
    role = _role_of(models, name)
    if role is None:
        status, message = lineage_path.not_served(models, name)
        return _error(status, message, status == HTTPStatus.SERVICE_UNAVAILABLE)
    entry = models.entries[role]
    body = entry.info.get("card")
    sha = entry.info.get("card_sha256")
    if body is None:
        return _error(
            HTTPStatus.NOT_FOUND,
            f"{entry.label} has no model card in this bundle: rebuild serving_bundle",
        )
    try:
        body = verified(body, sha, entry.label)
    except CardIntegrityError as exc:
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
    headers = {"x-card-sha256": str(sha), "x-model-version": entry.label}
    if wants_json(request.headers.get("accept", "")):
        return JSONResponse(
            {"model_version": entry.label, "sha256": sha, "card": body}, headers=headers
        )
    return PlainTextResponse(
        card_markdown(body), media_type="text/markdown; charset=utf-8", headers=headers
    )
