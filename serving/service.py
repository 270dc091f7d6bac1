"""The ml-assets BentoML service: fraud scoring, text embedding and hybrid search over the
promoted, validated models — the same bytes the platform validated, checked by sha256.

Serve a built bundle:  BENTOML_HOME=... bentoml serve ml-assets:<tag> --port 3100
The models are the ones pinned in bundle.json (written by the serving_bundle asset); a
`POST /reload` (API key) switches every worker to the current MLflow `production` versions.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound, ServiceUnavailable
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ml_assets.core.fraud_schema import CATEGORICAL, NUMERIC, SCHEMA
from ml_assets.core.lineage_spec import LineageSpec
from ml_assets.core.serving_bundle import (
    BUNDLE_MANIFEST,
    EMBEDDER,
    BundleIntegrityError,
    ModelEntry,
    entries_of,
    lineage_of_entry,
    score_role,
)
from serving import edge, errors, fastpath, openapi, runtime, tabular
from serving.cache import EmbeddingCache
from serving.embed_path import EmbedPath, Overloaded, too_many
from serving.metrics import Metrics, create_metrics, metrics_endpoint

log = logging.getLogger("bentoml.ml_assets")  # BentoML formats and ships "bentoml.*"


def _bundle() -> dict[str, Any]:
    """bundle.json: ML_SERVING_BUNDLE, else the Bento's copy (cwd is the Bento's src when
    served), else next to this file."""
    candidates = [
        Path.cwd() / "serving" / BUNDLE_MANIFEST,
        Path(__file__).with_name(BUNDLE_MANIFEST),
    ]
    if env := os.environ.get("ML_SERVING_BUNDLE"):
        candidates = [Path(env)]
    for path in candidates:
        if path.exists():
            return json.loads(path.read_text())
    raise RuntimeError(
        f"no {BUNDLE_MANIFEST} at {', '.join(map(str, candidates))}: the service serves a "
        "bundle built by the serving_bundle asset (materialize it in Dagster, then "
        "`bentoml serve ml-assets:<tag>`)"
    )


BUNDLE = _bundle()
ENTRIES = entries_of(BUNDLE)
# The role whose model answers /v1/score(/batch): the lineage that declares `score_routes`.
SCORER = score_role(ENTRIES)
# What search_quality_report judged for the bundled embedder (fusion weights and parameters),
# or why search is not served: the service searches with exactly this.
BUNDLE_SEARCH: dict[str, Any] = dict(BUNDLE.get("search") or {})


# ---- request and response schemas (the API's schema is these pydantic models) -------------

_BOUNDS = {c.name: c for c in SCHEMA}


def _numeric_field(name: str) -> Any:
    col = _BOUNDS[name]
    kind = int if col.kind == "int" else float
    return (kind, Field(ge=col.min, le=col.max, allow_inf_nan=False))


Transaction = create_model(
    "Transaction",
    __config__=ConfigDict(extra="forbid", strict=True),
    **{c: (Annotated[str, Field(min_length=1, max_length=64)], ...) for c in CATEGORICAL},
    **{c: _numeric_field(c) for c in NUMERIC},
)
Transaction.__doc__ = "One card transaction: the model's features, within the dataset's ranges."


class ScoreResult(BaseModel):
    probability: float
    is_fraud: bool
    threshold: float
    model_version: str


class BatchResult(BaseModel):
    results: list[ScoreResult]
    model_version: str
    count: int


class EmbedResult(BaseModel):
    vectors: list[list[float]]
    dim: int
    truncated: int
    model_version: str


class Hit(BaseModel):
    doc_id: str
    type: str
    title: str
    tags: list[str]
    score: float
    vector_rank: int | None
    lexical_rank: int | None


class SearchResult(BaseModel):
    hits: list[Hit]
    tenant_id: str
    mode: str
    model_version: str


def _threshold() -> float:
    value = os.environ.get("ML_FRAUD_THRESHOLD")
    return float(value) if value else float(BUNDLE.get("threshold", runtime.DEFAULT_THRESHOLD))


def _find_model_dir(tag: str) -> Path | None:
    """A model's directory: the Bento's own store first, then the local BentoML store."""
    try:
        return Path(bentoml.models.get(tag).path)
    except (bentoml.exceptions.NotFound, ValueError):
        pass
    name, version = tag.split(":", 1)
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    candidate = home / "models" / name / version
    return candidate if candidate.is_dir() else None


def _locate(entry: ModelEntry) -> Path:
    path = _find_model_dir(entry.bento_tag)
    if path is None:
        raise BundleIntegrityError(f"{entry.bento_tag} is not in this Bento or the model store")
    return path


# Every declared lineage's model the bundle serves, by role (the lineage's name).
LINEAGES = {
    role: LineageSpec.from_dict(lineage)
    for role, entry in ENTRIES.items()
    if (lineage := lineage_of_entry(entry)) is not None
}


# Routes whose requests record no OpenTelemetry span: BentoML's sampler records ~5 spans a
# request even when none is sampled, which costs more than a score. ML_SERVING_TRACE_REQUESTS=1
# records them again (with an exporter configured, for a trace of each request).
HOT_ROUTES = ["/v1/score", "/embed", "/search", "/v1/models/", "/metrics", "/livez", "/readyz"]


@bentoml.service(
    name="ml-assets",
    workers=int(os.environ.get("ML_SERVING_WORKERS", "2")),
    threads=int(os.environ.get("ML_SERVING_THREADS", "4")),
    # Short: BentoML's timeout middleware never cancels its per-request timer, so pending
    # timers pile up to req/s x timeout and lengthen the tail.
    traffic={"timeout": float(os.environ.get("ML_SERVING_TIMEOUT_S", "10"))},
    logging={"access": {"enabled": os.environ.get("ML_SERVING_ACCESS_LOG", "0") == "1"}},
    # serving/edge.py counts requests under BentoML's metric names, for less per request.
    metrics={"enabled": False, "namespace": "bentoml_service"},
    tracing={
        "excluded_urls": None if os.environ.get("ML_SERVING_TRACE_REQUESTS") == "1" else HOT_ROUTES
    },
)
@tabular.with_lineage_routes(LINEAGES, ENTRIES)
class MLService:
    """Scores, embeds and searches with the models pinned in bundle.json (or a later reload)."""

    fraud_model = bentoml.models.BentoModel(ENTRIES[SCORER].bento_tag)
    text_embedder = bentoml.models.BentoModel(ENTRIES[EMBEDDER].bento_tag)

    def __init__(self) -> None:
        self.threshold = _threshold()
        self.metrics: Metrics = create_metrics()
        self.cache = EmbeddingCache.from_env()
        self.embed_path = EmbedPath.from_env(self.metrics, self.cache)
        self._models: runtime.LoadedModels | None = None
        self._load_error: str | None = None
        self._reload_lock = threading.Lock()
        self._release = runtime.release_path()
        self._local = threading.local()
        self._start_release()
        self._watcher = runtime.ReleaseWatcher(self._release, self._follow_release)
        self._watcher.start()
        if os.environ.get("ML_SERVING_GC_TUNING", "1") == "1":
            # The models and imports are long-lived: move them out of the collector's view and
            # collect young objects less often, so full collections do not stall requests.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)

    # ---- model lifecycle ----------------------------------------------------------------

    def _start_release(self) -> None:
        """Serve the latest release another worker wrote, or else the bundle's own models."""
        release = runtime.read_release(self._release)
        if release is None:
            release = runtime.Release(0, ENTRIES, BUNDLE_SEARCH)
        try:
            self._install_release(release)
        except Exception as exc:  # not ready: /readyz says 503 and the log names the file
            self._load_error = str(exc)
            log.error("models not loaded, service not ready: %s", exc)

    def _install(self, models: runtime.LoadedModels) -> None:
        old = self._models
        self._models = models  # one reference swap: requests in flight keep `old`
        self._load_error = None
        self.cache.clear()  # keyed by the embedder's hash anyway; a reload starts it afresh
        self.metrics.cache_entries.set(0)
        for role, entry in models.entries.items():
            if old is not None and old.entries.get(role) != entry:
                self._mark_loaded(old.entries[role], 0)
            self._mark_loaded(entry, 1)
        log.info(
            "serving generation %d: %s, search %s (service code %s)",
            models.generation,
            models.versions(),
            "on" if models.search.get("enabled") else f"off ({models.search.get('reason')})",
            __file__,
        )

    def _mark_loaded(self, entry: ModelEntry, value: int) -> None:
        self.metrics.model_loaded.labels(
            role=entry.role,
            model=entry.registered_model,
            version=entry.version,
            sha256=entry.files["model.onnx"][:16],
        ).set(value)

    def _follow_release(self) -> None:
        release = runtime.read_release(self._release)
        current = self._models.generation if self._models else -1
        if release is None or release.generation <= current:
            return
        with self._reload_lock:
            self._install_release(release)

    def _install_release(self, release: runtime.Release) -> None:
        self._install(
            runtime.load_models(
                release.entries,
                _locate,
                release.generation,
                search=release.search,
                previous=self._models,
            )
        )

    def _error(self, kind: str, endpoint: str, exc: Exception) -> None:
        self.metrics.errors.labels(endpoint=endpoint, type=kind).inc()
        log.info("%s %s: %s", endpoint, kind, exc)

    def _ready_models(self, endpoint: str) -> runtime.LoadedModels:
        models = self._models
        if models is None:
            self._error("not_ready", endpoint, RuntimeError(self._load_error))
            raise ServiceUnavailable(f"models are not loaded: {self._load_error}")
        return models

    def __is_ready__(self) -> bool:
        return self._models is not None

    @bentoml.on_startup
    async def _report_loop(self) -> None:
        # uvicorn picks uvloop and httptools when installed (bento_build pins both).
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__)

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._watcher.stop()
        self.embed_path.close()

    # ---- scoring ------------------------------------------------------------------------

    def _score(self, records: list[dict[str, Any]], endpoint: str) -> tuple[list[ScoreResult], str]:
        models = self._ready_models(endpoint)
        start = time.perf_counter()
        proba = models.fraud.predict_records(records)
        self.metrics.inference_seconds.labels(endpoint=endpoint).observe(
            time.perf_counter() - start
        )
        version = models.entries[SCORER].label
        return [
            ScoreResult(
                probability=float(p),
                is_fraud=bool(p >= self.threshold),
                threshold=self.threshold,
                model_version=version,
            )
            for p in proba
        ], version

    @bentoml.api(route="/v1/score")
    async def score(self, transaction: Transaction) -> ScoreResult:  # type: ignore[valid-type]
        """Fraud probability of one transaction and the decision at the configured threshold."""
        # async on purpose: one row is ~10 us in ONNX Runtime, far less than the hop to
        # BentoML's thread pool that a sync API pays on every request. Served by
        # serving/fastpath.py unless ML_SERVING_LEAN_SCORE=0; both answer with score_one.
        return self.score_one(transaction)

    def score_one(self, transaction: Any) -> ScoreResult:
        return self._score([transaction.model_dump()], "score")[0][0]

    @bentoml.api(route="/v1/score/batch")
    def score_batch(
        self,
        transactions: Annotated[
            list[Transaction],  # type: ignore[valid-type]
            Field(min_length=1, max_length=runtime.MAX_BATCH),
        ],
    ) -> BatchResult:
        """Up to 1,000 transactions in one request."""
        results, version = self._score([t.model_dump() for t in transactions], "score_batch")
        return BatchResult(results=results, model_version=version, count=len(results))

    def _predict(
        self, role: str, records: list[dict[str, Any]], endpoint: str
    ) -> tuple[list[float], str]:
        models = self._ready_models(endpoint)
        start = time.perf_counter()
        values = models.tabular[role].predict_records(records)
        self.metrics.inference_seconds.labels(endpoint=f"{role}/{endpoint}").observe(
            time.perf_counter() - start
        )
        return [float(v) for v in values], models.entries[role].label

    # ---- embedding and search -----------------------------------------------------------

    @bentoml.api(route="/embed")
    async def embed(
        self,
        texts: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=runtime.MAX_TEXT_CHARS)]],
            Field(min_length=1, max_length=runtime.MAX_EMBED_TEXTS),
        ],
    ) -> EmbedResult:
        """Unit-norm sentence embeddings (384-d) of up to 256 texts."""
        # async: the texts wait on the event loop for the worker's batcher (serving/batcher.py),
        # which runs many requests' texts in one embedder call, off the loop.
        models = self._ready_models("embed")
        start = time.perf_counter()
        try:
            vectors, truncated = await self.embed_path.embed(models, texts)
        except Overloaded as exc:
            self._error("overloaded", "embed", exc)
            return too_many(exc)  # type: ignore[return-value]  # BentoML sends a Response as is
        # With batching, the request's wait for its batch plus the batch's run.
        self.metrics.inference_seconds.labels(endpoint="embed").observe(time.perf_counter() - start)
        # The generation the request started with: its batch ran on exactly this embedder.
        return EmbedResult(
            vectors=vectors.tolist(),
            dim=int(vectors.shape[1]),
            truncated=sum(truncated),
            model_version=models.entries[EMBEDDER].label,
        )

    def _conn(self, fresh: bool = False):
        """This worker thread's connection (autocommit: no read leaves a transaction open),
        reopened when closed, or when `fresh` (the last one was found dead)."""
        from ml_assets.core.search_index import connect

        conn = getattr(self._local, "conn", None)
        if fresh and conn is not None:
            log.info("search connection lost, reconnecting")
            self._local.conn = None
            conn.close()
            conn = None
        if conn is None or conn.closed:
            dsn = os.environ.get("ML_VECTOR_PG_DSN")
            if not dsn:
                raise ServiceUnavailable("search is not configured: set ML_VECTOR_PG_DSN")
            conn = connect(dsn, autocommit=True)
            self._local.conn = conn
        return conn

    @bentoml.api(route="/search")
    def search(
        self,
        query: Annotated[str, Field(min_length=1, max_length=2_000)],
        tenant_id: Annotated[str, Field(min_length=1, max_length=200)],
        types: list[str] | None = None,
        tags: list[str] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        mode: Literal["hybrid", "vector", "lexical"] = "hybrid",
    ) -> SearchResult:
        """Hybrid (vector + full-text) search within one tenant's documents."""
        import psycopg

        from ml_assets.core import search as search_lib
        from ml_assets.core.search_index import live_index

        models = self._ready_models("search")
        emb = models.entries[EMBEDDER]
        fusion = self._fusion(models)

        def run(conn: psycopg.Connection) -> list[search_lib.SearchHit]:
            live = live_index(conn)
            if live is None:
                raise ServiceUnavailable("no search index yet: materialize embedding_index")
            if live["model_version"] != emb.files["model.onnx"]:
                self._error("index_mismatch", "search", RuntimeError(live["model_version"]))
                raise ServiceUnavailable(
                    f"the live index was built with text-embedder sha256 "
                    f"{live['model_version'][:12]}, this server embeds with {emb.label} "
                    f"({emb.files['model.onnx'][:12]}); reindex with the served model"
                )
            return search_lib.search(
                conn,
                self.embed_path.cached(models, "search"),
                query,
                tenant_id,
                types=types,
                tags=tags,
                limit=limit,
                mode=mode,
                fusion=fusion,
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
            raise ServiceUnavailable(f"the search database is unavailable: {exc}") from exc
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
            mode=mode,
            model_version=emb.label,
        )

    def _fusion(self, models: runtime.LoadedModels) -> Any:
        """The validated fusion weights; search is refused (503) when none were validated."""
        from ml_assets.core.search import FusionWeights

        search = models.search
        if not search.get("enabled"):
            self._error("search_not_validated", "search", RuntimeError(search.get("reason")))
            raise ServiceUnavailable(f"search is not served: {search.get('reason')}")
        return FusionWeights(**search["config"]["fusion"])

    # ---- operations ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        models = self._models
        return {
            "ready": models is not None,
            "error": self._load_error,
            "generation": None if models is None else models.generation,
            "threshold": self.threshold,
            "models": {}
            if models is None
            else {
                role: {
                    "registered_model": e.registered_model,
                    "version": e.version,
                    "bento_model": e.bento_tag,
                    "sha256": e.files,
                    "provenance": e.provenance,
                    "info": e.info,
                    "gate": e.gate,
                }
                for role, e in models.entries.items()
            },
            "search": {} if models is None else models.search,
            # ONNX Runtime's providers of the embedder session (CUDA first when it runs there).
            "embedder_providers": [] if models is None else models.embedder.providers,
        }

    @bentoml.api(route="/reload")
    def reload(self, ctx: bentoml.Context, bundle: dict[str, Any] | None = None) -> dict[str, Any]:
        """Switch every worker to the current MLflow `production` versions (API key).

        `bundle`: the serving_bundle manifest of those versions (serving_deployment sends it);
        its validated search configuration is served with them. Without it, search keeps its
        configuration only while the embedder is unchanged."""
        expected = os.environ.get("ML_SERVING_API_KEY")
        given = ctx.request.headers.get("x-api-key") or ctx.request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        if not expected:
            raise BentoMLException(
                "reload is disabled: start the server with ML_SERVING_API_KEY set",
                error_code=HTTPStatus.FORBIDDEN,
            )
        if not given:
            raise BentoMLException(
                "reload needs the API key in the X-API-Key header",
                error_code=HTTPStatus.UNAUTHORIZED,
            )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise BentoMLException("wrong API key", error_code=HTTPStatus.FORBIDDEN)
        start = time.perf_counter()
        tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
        try:
            entries = runtime.resolve_production(
                tracking, _find_model_dir, {r: e.registered_model for r, e in ENTRIES.items()}
            )
        except runtime.NotBundledError as exc:
            self._error("not_bundled", "reload", exc)
            raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc
        except (runtime.RegistryError, BundleIntegrityError) as exc:
            self._error("registry", "reload", exc)
            raise ServiceUnavailable(str(exc)) from exc
        search = self._reload_search(entries, bundle)
        with self._reload_lock:
            current = self._models
            if current is not None and current.entries == entries and current.search == search:
                return {"changed": False, **self.describe(), "seconds": 0.0}
            release = runtime.read_release(self._release)
            generation = max(
                current.generation if current else 0, release.generation if release else 0
            )
            try:
                models = runtime.load_models(
                    entries, _locate, generation + 1, search=search, previous=current
                )
            except BundleIntegrityError as exc:
                self._error("refused", "reload", exc)
                raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc
            self._install(models)
            runtime.write_release(self._release, models)
        self.metrics.reloads.inc()
        return {"changed": True, **self.describe(), "seconds": time.perf_counter() - start}

    def _reload_search(
        self, entries: dict[str, ModelEntry], bundle: dict[str, Any] | None
    ) -> dict[str, Any]:
        if bundle is not None:
            try:
                pinned = entries_of(bundle)
            except (AttributeError, BundleIntegrityError, KeyError, TypeError, ValueError) as exc:
                raise InvalidArgument(f"bundle: not a serving bundle manifest ({exc})") from exc
            if {r: (e.label, e.files) for r, e in pinned.items()} != {
                r: (e.label, e.files) for r, e in entries.items()
            }:
                raise BentoMLException(
                    f"the bundle pins {sorted(e.label for e in pinned.values())}, production "
                    f"is {sorted(e.label for e in entries.values())}; a newer promotion is in "
                    "flight (its serving run reloads with its own bundle)",
                    error_code=HTTPStatus.CONFLICT,
                )
            return dict(bundle.get("search") or {})
        current = self._models
        if current is not None and current.entries.get(EMBEDDER) == entries[EMBEDDER]:
            return current.search
        return {
            "enabled": False,
            "reason": "reloaded to a new embedder without its bundle: the search configuration "
            "validated for it is unknown here (POST /reload with the serving_bundle manifest)",
        }


# GET routes (BentoML APIs are POST): /models describes what this worker serves, /metrics
# every worker's series (BentoML's own /metrics is off with its metrics middleware). Mounted
# at the root, after BentoML's own routes, so they only see paths those do not match.
async def _models_route(_: Request) -> JSONResponse:
    instance = bentoml.get_current_service()
    return JSONResponse(instance.describe())


# Outermost of ours: RED metrics, the optional client key and the concurrency cap
# (serving/edge.py). Then one error body for every API error, 413/415 before BentoML reads a
# body (serving/errors.py); then POST /v1/score served without BentoML's per-request work
# (serving/fastpath.py). The mount comes before BentoML's own /docs.json, so the document
# served is the one that declares those errors (serving/openapi.py).
EDGE = edge.install(MLService, extra_routes=["/models", "/docs.json"])
MLService.add_asgi_middleware(errors.UniformErrors)
if os.environ.get("ML_SERVING_LEAN_SCORE", "1") == "1":
    MLService.add_asgi_middleware(
        fastpath.LeanScore,
        service=MLService,
        route="/v1/score",
        api="score",
        method="score_one",
        argument="transaction",
    )
MLService.mount_asgi_app(
    Starlette(
        routes=[
            Route("/models", _models_route),
            Route("/metrics", metrics_endpoint),
            openapi.docs_route(MLService, keyed=bool(EDGE.keys)),
        ]
    ),
    path="/",
)
