"""The platform's event table (`ml_events.events` in the `ml_assets` database): every event the
replaced platform had, each validated against its JSON schema in ml_assets/schemas/ before it is
written. Dagster-free: the promotion gate, the index and the CLI all append here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

EVENTS_SCHEMA = "ml_events"
EVENTS_TABLE = sql.Identifier(EVENTS_SCHEMA, "events")

MODEL_PROMOTED = "ml.model.promoted.v1"
PROMOTION_REJECTED = "ml.model.promotion.rejected.v1"
INDEX_UPDATED = "search.index.updated.v1"
REINDEX_REQUEST = "ml.embedding.reindex.request.v1"
EVENT_TYPES = (MODEL_PROMOTED, PROMOTION_REJECTED, INDEX_UPDATED, REINDEX_REQUEST)


@cache
def schema(event_type: str) -> dict[str, Any]:
    """The JSON schema of one event type (ml_assets/schemas/<type>.json)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}; known: {EVENT_TYPES}")
    text = resources.files("ml_assets").joinpath(f"schemas/{event_type}.json").read_text()
    return json.loads(text)


def new_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """An event dict with a fresh id and timestamp (not yet validated or written)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def validate(event: dict[str, Any]) -> None:
    jsonschema.validate(event, schema(event["event_type"]))


def ensure_events_table(conn: psycopg.Connection) -> None:
    # DDL only when missing: CREATE INDEX IF NOT EXISTS takes a ShareLock on the table even when
    # the index exists, which would queue every other writer behind this transaction.
    if conn.execute("SELECT to_regclass('ml_events.events') IS NOT NULL").fetchone()[0]:
        return
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(EVENTS_SCHEMA)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " event_id uuid PRIMARY KEY, event_type text NOT NULL,"
            " occurred_at timestamptz NOT NULL, subject text NOT NULL, payload jsonb NOT NULL)"
        ).format(EVENTS_TABLE)
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS events_subject ON {} (subject, occurred_at)").format(
            EVENTS_TABLE
        )
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS events_type ON {} (event_type, occurred_at)").format(
            EVENTS_TABLE
        )
    )


def append(conn: psycopg.Connection, event: dict[str, Any], subject: str) -> None:
    """Validate `event` against its schema and insert it in `conn`'s current transaction."""
    validate(event)
    ensure_events_table(conn)
    conn.execute(
        sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(EVENTS_TABLE),
        (
            event["event_id"],
            event["event_type"],
            datetime.fromisoformat(event["occurred_at"]),
            subject,
            Jsonb(event),
        ),
    )


def append_to(dsn: str, event: dict[str, Any], subject: str) -> None:
    """Append one event in its own transaction."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        append(conn, event, subject)


def read(
    dsn_or_conn: str | psycopg.Connection,
    event_type: str,
    *,
    subject: str | None = None,
    after: datetime | None = None,
) -> list[dict[str, Any]]:
    """Events of one type (optionally one subject, after a time), oldest first."""
    own = isinstance(dsn_or_conn, str)
    conn = psycopg.connect(dsn_or_conn, connect_timeout=10) if own else dsn_or_conn
    try:
        with conn.transaction():
            ensure_events_table(conn)
            rows = conn.execute(
                sql.SQL(
                    "SELECT payload FROM {} WHERE event_type = %s"
                    " AND (%s::text IS NULL OR subject = %s)"
                    " AND (%s::timestamptz IS NULL OR occurred_at > %s)"
                    " ORDER BY occurred_at, event_id"
                ).format(EVENTS_TABLE),
                (event_type, subject, subject, after, after),
            ).fetchall()
    finally:
        if own:
            conn.close()
    return [r[0] for r in rows]
