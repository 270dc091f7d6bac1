"""`POST /search` behind the API: this worker thread's database connection, the check that the
live index was built with the served embedder, the validated search configuration (fusion and
scan parameters, SearchServing), and the errors mapped to the status a client can act on (404
unknown tenant, 400 bad input, 503 database or no index).

Every 503 is answered here, with `Retry-After` and the reason (for search that is not
validated: the reason GET /models shows), in the API's error body; none is an exception for
BentoML, which would mask the reason and log a traceback."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from bentoml.exceptions import InvalidArgument, NotFound
from starlette.responses import JSONResponse

from ml_assets.platform.serving_bundle import EMBEDDER
from serving import runtime
from serving.embed_path import EmbedPath
from serving.errors import Unavailable
from serving.schemas import Hit, SearchResult

log = logging.getLogger("bentoml.ml_assets")

# (kind, endpoint, exception): the service's error counter and log line.
ErrorSink = Callable[[str, str, Exception], None]
# Search waits on the platform (a reindex, a quality report, a bundle rebuild: minutes); a
# database restart takes seconds.
WAIT_FOR_PLATFORM_S = 60
WAIT_FOR_DATABASE_S = 5


class SearchPath:
    def __init__(self, embed_path: EmbedPath, error: ErrorSink) -> None:
        self.embed_path, self._error = embed_path, error
        self._local = threading.local()

    def _conn(self, fresh: bool = False):
        """This worker thread's connection (autocommit: no read leaves a transaction open),
        reopened when closed, or when `fresh` (the last one was found dead)."""
        from ml_assets.search.index import connect

        conn = getattr(self._local, "conn", None)
        if fresh and conn is not None:
            log.info("search connection lost, reconnecting")
            self._local.conn = None
            conn.close()
            conn = None
        if conn is None or conn.closed:
            dsn = os.environ.get("ML_VECTOR_PG_DSN")
            if not dsn:
                raise Unavailable(
                    "search is not configured: set ML_VECTOR_PG_DSN", WAIT_FOR_PLATFORM_S
                )
            conn = connect(dsn, autocommit=True)
            self._local.conn = conn
        return conn

    def _serving(self, models: runtime.LoadedModels) -> Any:
        """Every judged parameter (SearchServing: fusion, ef_search, exact scans); search is
        refused (503) when none were validated (runtime.search_for parsed it at load)."""
        from ml_assets.search.config import SearchServing

        search = models.search
        if not search.get("enabled"):
            self._error("search_not_validated", "search", RuntimeError(search.get("reason")))
            raise Unavailable(f"search is not served: {search.get('reason')}", WAIT_FOR_PLATFORM_S)
        return SearchServing.from_json(search["config"], search["embedder_sha256"])

    def search(
        self, models: runtime.LoadedModels, query: str, tenant_id: str, **options: Any
    ) -> SearchResult | JSONResponse:
        """`options`: types, tags, limit, mode (validated by the API's signature); a refusal
        to wait out is a 503 response (BentoML sends a Response as is)."""
        try:
            return self._search(models, query, tenant_id, **options)
        except Unavailable as exc:
            return exc.response()

    def _search(
        self, models: runtime.LoadedModels, query: str, tenant_id: str, **options: Any
    ) -> SearchResult:
        import psycopg

        from ml_assets.search import query as search_lib
        from ml_assets.search.index import live_index

        emb = models.entries[EMBEDDER]
        serving = self._serving(models)

        def run(conn: psycopg.Connection) -> list[search_lib.SearchHit]:
            live = live_index(conn)
            if live is None:
                raise Unavailable(
                    "no search index yet: materialize embedding_index", WAIT_FOR_PLATFORM_S
                )
            if live["model_version"] != emb.files["model.onnx"]:
                self._error("index_mismatch", "search", RuntimeError(live["model_version"]))
                raise Unavailable(
                    f"the live index was built with embedder sha256 "
                    f"{live['model_version'][:12]}, this server embeds with {emb.label} "
                    f"({emb.files['model.onnx'][:12]}); reindex with the served model",
                    WAIT_FOR_PLATFORM_S,
                )
            return search_lib.search(
                conn,
                self.embed_path.cached(models, "search"),
                query,
                tenant_id,
                fusion=serving.fusion,
                **serving.scan_options(),
                **options,
            )

        try:
            # A dead connection (say the database restarted) is retried once on a new one.
            hits = search_lib.retry_on_dead_connection(self._conn, run)
        except search_lib.UnknownTenantError as exc:
            self._error("unknown_tenant", "search", exc)
            raise NotFound(str(exc)) from exc
        except ValueError as exc:
            self._error("bad_input", "search", exc)
            raise InvalidArgument(str(exc)) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._local.conn = None
            self._error("database", "search", exc)
            raise Unavailable(
                f"the search database is unavailable: {exc}", WAIT_FOR_DATABASE_S
            ) from exc
        return SearchResult(
            hits=[
                Hit(
                    doc_id=h.doc_id,
                    type=h.type,
                    title=h.title,
                    tags=list(h.tags),
                    score=h.score,
                    vector_rank=h.vector_rank,
                    lexical_rank=h.lexical_rank,
                )
                for h in hits
            ],
            tenant_id=tenant_id,
            mode=options.get("mode", "hybrid"),
            model_version=emb.label,
        )
