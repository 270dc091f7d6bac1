"""Switching the live index: one transaction that replaces the view, bounded lock waits.

Only the switch locks what readers lock (the view, AccessExclusive): it waits at most
`lock_timeout_s` per attempt, retries, then raises IndexLockTimeout naming the sessions in the
way.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from ml_assets.platform import events
from ml_assets.search.tables import EVENT_SUBJECT, LIVE_VIEW, SCHEMA

# While the switch waits for the view's lock, new searches queue behind it: wait briefly, let
# them run between attempts, and give up after a few (readers hold the lock for milliseconds,
# so only a stuck session makes the switch wait at all).
SWITCH_LOCK_TIMEOUT_S = 1.0
SWITCH_ATTEMPTS = 4
SWITCH_BACKOFF_S = 0.5


class IndexLockTimeout(RuntimeError):
    """The switch could not take its locks in time; the message names the sessions holding them."""


def live_index(conn: psycopg.Connection) -> dict | None:
    """The live index's row; in its own transaction (a savepoint inside the caller's)."""
    with conn.transaction():
        row = conn.execute(
            sql.SQL(
                "SELECT table_name, model_version, dim, corpus_sha256, switched_at"
                " FROM {}.live_index WHERE name = 'default'"
            ).format(sql.Identifier(SCHEMA))
        ).fetchone()
    if row is None:
        return None
    keys = ("table_name", "model_version", "dim", "corpus_sha256", "switched_at")
    return dict(zip(keys, row, strict=True))


# What each lock the switch takes waits for: the modes that others' granted locks conflict with.
_STRONG_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
_SWITCH_CONFLICTS: dict[str, tuple[str, ...]] = {
    # CREATE OR REPLACE VIEW takes AccessExclusiveLock: every reader's lock is in its way.
    f"{SCHEMA}.{LIVE_VIEW}": (
        "AccessShareLock",
        "RowShareLock",
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        *_STRONG_MODES,
    ),
    f"{SCHEMA}.live_index": _STRONG_MODES,
    # events.append inserts (RowExclusiveLock) after CREATE INDEX IF NOT EXISTS (ShareLock).
    f"{events.EVENTS_SCHEMA}.events": (
        "RowExclusiveLock",
        "ShareUpdateExclusiveLock",
        *_STRONG_MODES,
    ),
}
QUERY_TEXT_CHARS = 200


def lock_holders(conn: psycopg.Connection) -> list[dict]:
    """Other sessions holding locks that the index switch would wait for (pg_stat_activity)."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT l.pid, l.relation::regclass::text, l.mode, a.state, a.application_name,"
            " extract(epoch FROM now() - a.state_change)::float8, left(a.query, %s)"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.relation IN (SELECT to_regclass(n) FROM unnest(%s::text[]) n)"
            " ORDER BY l.pid, 2, 3",
            (QUERY_TEXT_CHARS, list(_SWITCH_CONFLICTS)),
        ).fetchall()
    keys = ("pid", "relation", "mode", "state", "application_name", "state_seconds", "query")
    return [
        dict(zip(keys, r, strict=True)) for r in rows if r[2] in _SWITCH_CONFLICTS.get(r[1], ())
    ]


def _describe(holder: dict) -> str:
    seconds = holder["state_seconds"]
    since = "" if seconds is None else f" for {seconds:.1f} s"
    return (
        f"pid {holder['pid']} ({holder['state'] or 'unknown state'}{since}, application "
        f"{holder['application_name']!r}, holds {holder['mode']} on {holder['relation']}): "
        f"{holder['query']!r}"
    )


def switch_live(
    conn: psycopg.Connection,
    table: str,
    model_version: str,
    dim: int,
    corpus_sha256: str,
    *,
    replace_view: bool,
    event: dict,
    lock_timeout_s: float,
    attempts: int,
    backoff_s: float,
) -> None:
    """Point the live view at `table`, record it and append `event`, all or nothing.

    Runs in a savepoint of the caller's transaction (the caller commits) or, outside one, in
    its own. Each attempt waits at most `lock_timeout_s` for its locks; a timed-out attempt
    is rolled back alone, and after `attempts` of them IndexLockTimeout names the holders.
    """
    holders: list[dict] = []
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                # SET LOCAL: the timeout ends with the transaction, the reindex's other
                # statements keep the server's default.
                conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{max(1, round(lock_timeout_s * 1000))}ms")
                    )
                )
                if replace_view:
                    conn.execute(
                        sql.SQL("CREATE OR REPLACE VIEW {}.{} AS SELECT * FROM {}.{}").format(
                            sql.Identifier(SCHEMA),
                            sql.Identifier(LIVE_VIEW),
                            sql.Identifier(SCHEMA),
                            sql.Identifier(table),
                        )
                    )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.live_index VALUES ('default', %s, %s, %s, %s, now())"
                        " ON CONFLICT (name) DO UPDATE SET table_name = EXCLUDED.table_name,"
                        " model_version = EXCLUDED.model_version, dim = EXCLUDED.dim,"
                        " corpus_sha256 = EXCLUDED.corpus_sha256,"
                        " switched_at = EXCLUDED.switched_at"
                    ).format(sql.Identifier(SCHEMA)),
                    (table, model_version, dim, corpus_sha256),
                )
                events.append(conn, event, EVENT_SUBJECT)
            return
        except psycopg.errors.LockNotAvailable:
            holders = lock_holders(conn)
            if attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    previous = event["previous_table"]
    serving = f"{SCHEMA}.{previous}" if previous else "no index yet"
    named = "; ".join(map(_describe, holders)) or (
        "none found any more (the holder ended between the timeout and the lookup)"
    )
    raise IndexLockTimeout(
        f"the switch of {EVENT_SUBJECT} to {SCHEMA}.{table} did not get its locks in "
        f"{attempts} attempts of lock_timeout {lock_timeout_s:g} s, so nothing was switched "
        f"and search still serves {serving}. Sessions holding the locks: {named}. "
        "A session 'idle in transaction' is a client that never committed: fix or restart "
        "that client, or end the session (SELECT pg_terminate_backend(<pid>)), then run the "
        "reindex again (a table already built is kept: the rerun only switches to it)."
    )
