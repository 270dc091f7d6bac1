"""POST /v1/models/<name>/predict(/batch) for the lineages the current generation serves.

A Bento's class has routes for the lineages its own bundle serves. A reload may bring others
(a lineage added since the Bento was built, or one whose declared schema changed) and may drop
some. This ASGI middleware routes by the generation each request finds:

- a lineage served with the schema the class was built with: on to BentoML's own route;
- a lineage served otherwise: answered here, by the same API method built for its schema
  (serving/tabular.py: the same input model, 400 body, code and response);
- a lineage the bundle declares but does not serve (no validated production version yet):
  503 with the reason and Retry-After;
- any other name: 404 "model 'x' is not served (declared lineages: ...)".
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from ml_assets.platform.lineage_spec import LineageSpec
from serving import tabular
from serving.errors import ASGIApp, Receive, Scope, Send
from serving.fastpath import answer, parsed, read_body, respond

PREFIX = "/v1/models/"
RETRY_AFTER_S = 30  # a lineage waiting for validation is minutes away, not seconds


def parse(path: str) -> tuple[str, bool] | None:
    """(lineage name, batch?) of a predict route's path, or None."""
    if not path.startswith(PREFIX):
        return None
    name, _, tail = path[len(PREFIX) :].partition("/")
    if not name or tail not in ("predict", "predict/batch"):
        return None
    return name, tail == "predict/batch"


def not_served(models: Any, name: str) -> tuple[int, str]:
    """(status, message) for a lineage name the generation `models` does not serve."""
    status = models.declared.get(name)
    if status is not None and not status.get("served"):
        reason = status.get("reason") or "it has no validated production version yet"
        return HTTPStatus.SERVICE_UNAVAILABLE, (
            f"model {name!r} ({status.get('registered_model', name)}) is declared but not "
            f"served yet: {reason}"
        )
    declared = ", ".join(sorted(models.declared)) or "none"
    return HTTPStatus.NOT_FOUND, f"model {name!r} is not served (declared lineages: {declared})"


# API methods built for a served lineage's schema, by (role, spec): built once per worker.
_METHODS: dict[tuple[str, str], dict[str, Any]] = {}


def methods_for(role: str, spec: LineageSpec) -> dict[str, Any]:
    """The predict and predict/batch API methods of `spec` (serving/tabular.py), by name."""
    key = (role, json.dumps(spec.to_dict(), sort_keys=True))
    methods = _METHODS.get(key)
    if methods is None:
        methods = _METHODS[key] = tabular.lineage_methods(role, spec)
    return methods


def routes_of(name: str) -> tuple[str, str]:
    return f"{PREFIX}{name}/predict", f"{PREFIX}{name}/predict/batch"


def docs_view(
    static: dict[str, LineageSpec], models: Any
) -> tuple[tuple[Any, ...], list[str], dict[str, Any]]:
    """What the OpenAPI document changes for the generation `models`: (a key of the change,
    the class's routes no longer served as built, the API methods of the lineages served
    otherwise)."""
    if models is None:
        return (), [], {}
    by_name = {spec.name: spec for spec in static.values()}
    served = {spec.name: (role, spec) for role, spec in models.specs.items()}
    dropped = sorted(n for n, spec in by_name.items() if served.get(n, (None, None))[1] != spec)
    added = {n: rs for n, rs in sorted(served.items()) if by_name.get(n) != rs[1]}
    methods: dict[str, Any] = {}
    for role, spec in added.values():
        methods.update(methods_for(role, spec))
    key = (
        tuple(dropped),
        tuple((n, json.dumps(spec.to_dict(), sort_keys=True)) for n, (_, spec) in added.items()),
    )
    return key, [r for n in dropped for r in routes_of(n)], methods


class LineageRoutes:
    """ASGI middleware; `static`: the lineages the service class has routes for, by role."""

    def __init__(self, app: ASGIApp, static: dict[str, LineageSpec]) -> None:
        self.app = app
        self.static = {spec.name: spec for spec in static.values()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = parse(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        from bentoml import get_current_service

        name, batch = route
        instance = get_current_service()
        models = instance._models
        if models is None:  # not ready: BentoML's route (or its 404) answers as before
            await self.app(scope, receive, send)
            return
        served = models.lineage(name)
        if served is None:
            await self._refuse(instance, models, name, receive, send)
            return
        role, spec = served
        if self.static.get(name) == spec:
            await self.app(scope, receive, send)
            return
        route = routes_of(name)[1 if batch else 0]
        api = next(m for m in methods_for(role, spec).values() if m.route == route)
        data = await parsed(receive, send, api.input_spec)
        if data is None:
            return
        argument = "rows" if batch else "features"
        await answer(send, lambda: api.func(instance, getattr(data, argument)), scope["path"])

    async def _refuse(
        self, instance: Any, models: Any, name: str, receive: Receive, send: Send
    ) -> None:
        status, message = not_served(models, name)
        instance._error("not_served", "predict", RuntimeError(message))
        await read_body(receive)
        headers = (
            [(b"retry-after", str(RETRY_AFTER_S).encode())]
            if status == HTTPStatus.SERVICE_UNAVAILABLE
            else []
        )
        await respond(send, status, json.dumps({"error": message}).encode(), headers)
