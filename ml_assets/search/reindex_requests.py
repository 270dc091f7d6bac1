"""Operator reindex requests (`ml.embedding.reindex.request.v1` in the event table).

`ml-assets reindex --reason ...` appends one; so can a plain SQL row. reindex_sensor reads them
with the row's own columns (the table's primary key and timestamp), so a hand-written row is
found by the same rules as one the CLI wrote, and validates each payload before it acts on it.
Dagster-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
import psycopg
from psycopg import sql

from ml_assets.platform import events

EVENT_TYPE = events.REINDEX_REQUEST
# What the request is about: the live index (search.index.updated.v1 uses the same subject).
SUBJECT = "search.live_documents"


@dataclass(frozen=True)
class Request:
    """One request row: its id and time from the table's columns, the payload's fields."""

    event_id: str
    occurred_at: datetime
    actor: str | None
    reason: str | None
    error: str | None = None  # why the payload is not a valid request; None when it is


def new_request(actor: str, reason: str) -> dict[str, Any]:
    """A validated request event (not yet written)."""
    if not reason.strip() or not actor.strip():
        raise ValueError("a reindex request needs a non-empty --reason and actor")
    event = events.new_event(EVENT_TYPE, actor=actor, reason=reason)
    events.validate(event)
    return event


def append_request(dsn: str, actor: str, reason: str) -> dict[str, Any]:
    """Append one request in its own transaction; returns the event."""
    event = new_request(actor, reason)
    events.append_to(dsn, event, SUBJECT)
    return event


def parse(event_id: str, occurred_at: datetime, payload: Any) -> Request:
    """A row as a Request; a payload that is not a valid request gets `error` set."""
    error = None
    try:
        jsonschema.validate(payload, events.schema(EVENT_TYPE))
    except jsonschema.ValidationError as exc:
        error = f"payload does not match {EVENT_TYPE}: {exc.message}"
    if error is None and payload["event_id"] != event_id:
        error = f"payload event_id {payload['event_id']} differs from the row's"
    fields = payload if isinstance(payload, dict) else {}
    return Request(event_id, occurred_at, fields.get("actor"), fields.get("reason"), error)


def read_requests(dsn: str, *, after: datetime | None = None) -> list[Request]:
    """Every request row written after `after` (by the row's occurred_at), oldest first."""
    try:
        conn = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"cannot read reindex requests ({exc}); check ML_VECTOR_PG_DSN and that the "
            "server is running (`ml-assets up` starts the embedded one)"
        ) from exc
    with conn:
        events.ensure_events_table(conn)
        rows = conn.execute(
            sql.SQL(
                "SELECT event_id::text, occurred_at, payload FROM {} WHERE event_type = %s"
                " AND (%s::timestamptz IS NULL OR occurred_at > %s)"
                " ORDER BY occurred_at, event_id"
            ).format(events.EVENTS_TABLE),
            (EVENT_TYPE, after, after),
        ).fetchall()
    return [parse(*row) for row in rows]
