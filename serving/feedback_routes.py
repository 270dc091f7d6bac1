"""POST /v1/models/<name>/feedback: the true label of a logged scoring request, one or a batch.

The body is `{"request_id", "label", "row_index"?}` or a list of them (`row_index`: the row of
a batch request, 0 by default). The label is checked against the lineage's task (0 or 1 for a
classification, a finite number for a regression) and stored beside the inference log, in
`inference_feedback__<name>`, keyed by the logged row.

- a request id the log does not hold (never sampled, not written yet, past retention): 404
  naming it, and nothing of the batch is stored;
- the same label again: idempotent (counted as a duplicate); another label for a row already
  labelled: 409, nothing stored;
- the log off or its Postgres unreachable: 503.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ml_assets.monitoring.inference_tables import ensure_tables, feedback_table, log_table
from ml_assets.platform.lineage_spec import LineageSpec

PATH = "/v1/models/{name}/feedback"
MAX_ITEMS = 1_000
# The posted (request_id, row_index, label) triples as a relation: three bound arrays.
KEYS = "SELECT * FROM unnest(%s::text[], %s::int[], %s::jsonb[]) AS k(request_id, row_index, label)"


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    label: float | int
    row_index: Annotated[int, Field(ge=0, lt=MAX_ITEMS)] = 0


BODY = TypeAdapter(Feedback | Annotated[list[Feedback], Field(min_length=1, max_length=MAX_ITEMS)])


class FeedbackError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def label_errors(spec: LineageSpec, items: list[Feedback]) -> list[str]:
    """Why each label does not fit the lineage's task (empty when all do)."""
    out = []
    for i, item in enumerate(items):
        if spec.task == "classification" and (
            isinstance(item.label, bool) or item.label not in (0, 1)
        ):
            out.append(f"item {i}: {spec.name} is a classification: label must be 0 or 1")
        elif spec.task == "regression" and not math.isfinite(float(item.label)):
            out.append(f"item {i}: {spec.name} is a regression: label must be a finite number")
    return out


MISSING = (
    "SELECT k.request_id, k.row_index FROM ({keys}) k WHERE NOT EXISTS (SELECT 1 FROM {table} l"
    " WHERE l.request_id = k.request_id AND l.row_index = k.row_index)"
)
CLASHING = (
    "SELECT k.request_id, k.row_index FROM ({keys}) k JOIN {table} f"
    " ON f.request_id = k.request_id AND f.row_index = k.row_index WHERE f.label <> k.label"
)
INSERT = (
    "INSERT INTO {table} (request_id, row_index, label, received_at)"
    " SELECT DISTINCT ON (request_id, row_index) request_id, row_index, label, now()"
    " FROM ({keys}) k ON CONFLICT (request_id, row_index) DO NOTHING"
)


def store(conn: Any, spec: LineageSpec, items: list[Feedback]) -> dict[str, int]:
    """Store the labels in one transaction: {"stored", "duplicates"}, or FeedbackError."""
    from psycopg import sql

    ensure_tables(conn, spec.name)
    params = (
        [i.request_id for i in items],
        [i.row_index for i in items],
        [json.dumps(i.label) for i in items],
    )

    def run(template: str, table: str) -> Any:
        query = sql.SQL(template).format(keys=sql.SQL(KEYS), table=sql.Identifier(table))
        return conn.execute(query, params)

    def named(keys: list[tuple[str, int]]) -> str:
        return ", ".join(f"{r}#{i}" for r, i in keys[:10])

    with conn.transaction():
        if missing := run(MISSING, log_table(spec.name)).fetchall():
            raise FeedbackError(
                HTTPStatus.NOT_FOUND,
                f"{len(missing)} request id(s) not in {spec.name}'s inference log: "
                f"{named(missing)} (not sampled, not written yet, or past retention)",
            )
        if clash := run(CLASHING, feedback_table(spec.name)).fetchall():
            raise FeedbackError(HTTPStatus.CONFLICT, f"already labelled otherwise: {named(clash)}")
        stored = run(INSERT, feedback_table(spec.name)).rowcount
    return {"stored": stored, "duplicates": len(items) - stored}


def feedback_endpoint(
    lookup: Callable[[str], tuple[LineageSpec, str | None] | None],
) -> Callable[[Request], Any]:
    """The Starlette endpoint; `lookup(name)`: (the served lineage's spec, the log's DSN)."""

    async def endpoint(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        found = lookup(name)
        if found is None:
            return JSONResponse({"error": f"model {name!r} is not served"}, HTTPStatus.NOT_FOUND)
        spec, dsn = found
        try:
            body = BODY.validate_json(await request.body())
        except ValidationError as exc:
            detail = exc.errors(include_context=False, include_input=False)
            return JSONResponse({"error": "invalid feedback", "detail": detail}, 400)
        items = body if isinstance(body, list) else [body]
        if errors := label_errors(spec, items):
            return JSONResponse({"error": "; ".join(errors)}, HTTPStatus.BAD_REQUEST)
        if spec.task == "classification":  # 1 and 1.0 are one label
            items = [i.model_copy(update={"label": int(i.label)}) for i in items]
        if not dsn:
            return JSONResponse(
                {"error": "the inference log is off (set ML_INFERENCE_LOG_DSN)"},
                HTTPStatus.SERVICE_UNAVAILABLE,
            )
        try:
            result = await run_in_threadpool(_store, dsn, spec, items)
        except FeedbackError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse(result)

    return endpoint


def _store(dsn: str, spec: LineageSpec, items: list[Feedback]) -> dict[str, int]:
    import psycopg

    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise FeedbackError(
            HTTPStatus.SERVICE_UNAVAILABLE, f"the inference log's Postgres is unreachable: {exc}"
        ) from exc
    with conn:
        return store(conn, spec, items)
