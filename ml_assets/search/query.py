"""Search over the live index: vector, lexical and hybrid, one SQL statement per mode.

The tenant filter is a bound parameter in every statement's WHERE clause: no query can reach
another tenant's rows. Filtered vector search uses pgvector's iterative HNSW scan, so a small
tenant still gets `limit` results (pgvector issues 259/671).

Every read runs in its own transaction (`conn.transaction()`): a search never leaves its
connection idle in transaction, holding a lock on the view that a reindex must replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict, TypeVar, Unpack

import numpy as np
import psycopg

from ml_assets.search.config import (
    DEFAULT_EF_SEARCH,
    DEFAULT_FUSION,
    EXACT_SCAN_MAX_DOCS,
    MODES,
    FusionWeights,
    Mode,
)
from ml_assets.search.index import Embedder, connect
from ml_assets.search.sql import SearchRequest, search_params, set_search_locals, statement

# The configuration's names too: callers of search() (the service) pass a FusionWeights.
__all__ = [
    "DEFAULT_EF_SEARCH",
    "DEFAULT_FUSION",
    "EXACT_SCAN_MAX_DOCS",
    "MODES",
    "FusionWeights",
    "Mode",
    "SearchHit",
    "SearchOptions",
    "SearchRequest",
    "UnknownTenantError",
    "connection_lost",
    "retry_on_dead_connection",
    "run_search",
    "search",
    "tenant_exists",
]

# How long a read waits for the database to come back (a restart) before it fails.
RECONNECT_S = 5.0
# SQLSTATEs of a session the server ended (pg_terminate_backend, shutdown, crash, restart).
_SESSION_ENDED = ("57P01", "57P02", "57P03", "57P04", "57P05")

T = TypeVar("T")


@dataclass(frozen=True)
class SearchHit:
    doc_id: str
    tenant_id: str
    type: str
    title: str
    tags: tuple[str, ...]
    score: float
    vector_rank: int | None
    lexical_rank: int | None


class UnknownTenantError(LookupError):
    """The tenant has no documents in the live index."""


class SearchOptions(TypedDict, total=False):
    """The keyword options of `run_search` and `search`: SearchRequest's fields (and defaults)
    after the tenant."""

    types: Sequence[str] | None
    tags: Sequence[str] | None
    limit: int
    mode: Mode
    fusion: FusionWeights
    ef_search: int
    exact_scan_max_docs: int


def run_search(
    conn: psycopg.Connection,
    query: str,
    query_vector: np.ndarray | None,
    tenant_id: str,
    **options: Unpack[SearchOptions],
) -> list[SearchHit]:
    """Run one mode's statement on `conn` (vector/hybrid need the query's embedding)."""
    return _run(conn, SearchRequest(query, tenant_id, **options), query_vector)


def _run(
    conn: psycopg.Connection, request: SearchRequest, query_vector: np.ndarray | None
) -> list[SearchHit]:
    if request.mode != "lexical" and query_vector is None:
        raise ValueError(f"mode {request.mode!r} needs the query's embedding")
    params = search_params(request, query_vector)
    with conn.transaction():
        set_search_locals(conn, request.ef_search)
        rows = conn.execute(statement(request.mode, request.fusion), params).fetchall()
    return [
        SearchHit(
            r[0],
            r[1],
            r[2],
            r[3],
            tuple(r[4]),
            float(r[5]),
            None if r[6] is None else int(r[6]),
            None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


def tenant_exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    with conn.transaction():
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM search.live_documents WHERE tenant_id = %s)",
            (tenant_id,),
        ).fetchone()
    return bool(row and row[0])


def search(
    dsn_or_conn: str | psycopg.Connection,
    embedder: Embedder,
    query: str,
    tenant_id: str,
    **options: Unpack[SearchOptions],
) -> list[SearchHit]:
    """Search the live index for one tenant; raises UnknownTenantError for a tenant with no rows.

    The service passes the configuration its bundle judged (SearchServing): the fusion and both
    scan parameters."""
    request = SearchRequest(query, tenant_id, **options)
    qvec = None if request.mode == "lexical" else embedder.embed([query])[0]
    own = isinstance(dsn_or_conn, str)
    conn = connect(dsn_or_conn) if own else dsn_or_conn
    try:
        hits = _run(conn, request, qvec)
        if not hits and not tenant_exists(conn, tenant_id):
            raise UnknownTenantError(f"tenant {tenant_id!r} has no documents in the index")
        return hits
    finally:
        if own:
            conn.close()


def connection_lost(conn: psycopg.Connection, exc: psycopg.Error) -> bool:
    """Whether `exc` means the session is gone (retry on a new one), not a failed statement."""
    if conn.closed or conn.broken or isinstance(exc, psycopg.InterfaceError):
        return True
    # libpq's own errors (socket closed, server gone) carry no SQLSTATE; class 08 is the
    # connection-exception class.
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SESSION_ENDED


def _connect_within(
    get_conn: Callable[[bool], psycopg.Connection], fresh: bool, deadline: float
) -> psycopg.Connection:
    """get_conn(fresh), retried with backoff while the server refuses connections."""
    delay = 0.05
    while True:
        try:
            return get_conn(fresh)
        except psycopg.OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            fresh = True


def retry_on_dead_connection(
    get_conn: Callable[[bool], psycopg.Connection],
    work: Callable[[psycopg.Connection], T],
    *,
    reconnect_s: float = RECONNECT_S,
) -> T:
    """work(conn) on `get_conn(False)` (a cached connection); once more on `get_conn(True)` (a
    new one) when the first turns out dead, so a database restart fails no read.

    `work` must be safe to repeat (a read). Connecting waits up to `reconnect_s` for a server
    that is restarting; a second failure, or an error that is not a lost session, is raised.
    """
    conn = _connect_within(get_conn, False, time.monotonic() + reconnect_s)
    try:
        return work(conn)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if not connection_lost(conn, exc):
            raise
    return work(_connect_within(get_conn, True, time.monotonic() + reconnect_s))
