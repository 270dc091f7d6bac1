"""The ml-assets BentoML service: every declared lineage's model, the /v1/score routes, text
embedding and hybrid search over the promoted, validated models — the same bytes the platform
validated, checked by sha256.

Serve a built bundle:  BENTOML_HOME=... bentoml serve ml-assets:<tag> --port 3100
A server starts on the models pinned in its Bento's bundle.json (written by the serving_bundle
asset), never on what an earlier server was reloaded to. `POST /reload` (API key) switches
every worker to the current MLflow `production` versions of the set the posted bundle pins:
lineages may be added, dropped or changed, and each lineage's routes follow
(serving/lineage_path.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from http import HTTPStatus
from typing import Annotated, Any, Literal

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ml_assets.platform.serving_bundle import (
    EMBEDDER,
)
from serving import (
    card_routes,
    edge,
    errors,
    fastpath,
    feedback_routes,
    lineage_path,
    openapi,
    reload_path,
    request_ids,
    runtime,
    tabular,
)
from serving.bundled import ENTRIES, LINEAGES, SCORE_ROUTE, SCORER
from serving.cache import EmbeddingCache
from serving.embed_path import EmbedPath, Overloaded, too_many
from serving.inference_log import InferenceLog, LogSettings
from serving.lifecycle import ModelLifecycle
from serving.metrics import Metrics, create_metrics, metrics_endpoint
from serving.schemas import EmbedResult, SearchResult, score_models, transaction_model
from serving.search_path import SearchPath

log = logging.getLogger("bentoml.ml_assets")  # BentoML formats and ships "bentoml.*"
# /v1/score's models: the features of the lineage that declares `score_routes` in, its
# probability and declared decision (a boolean field it names) out.
Transaction = transaction_model(LINEAGES[SCORER])
ScoreResult, BatchResult = score_models(SCORE_ROUTE)
DECISION = SCORE_ROUTE.decision_field


# A text field Postgres stores: no NUL character (a pattern the OpenAPI document declares).
NO_NUL = r"^[^\x00]*$"

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
class MLService(ModelLifecycle):
    """Scores, embeds and searches with the models pinned in bundle.json (or a later reload)."""

    text_embedder = bentoml.models.BentoModel(ENTRIES[EMBEDDER].bento_tag)

    def __init__(self) -> None:
        self.metrics: Metrics = create_metrics()
        self.cache = EmbeddingCache.from_env()
        self.embed_path = EmbedPath.from_env(self.metrics, self.cache)
        self.inference_log = InferenceLog(LogSettings.from_env())
        self._models: runtime.LoadedModels | None = None
        self._load_error: str | None = None
        self.search_path = SearchPath(self.embed_path, self._error)
        self._reload_lock = threading.Lock()
        self._server = runtime.server_identity()
        self._release = runtime.release_path()
        self._start_release()
        self._watcher = runtime.ReleaseWatcher(self._release, self._follow_release)
        self._watcher.start()
        if os.environ.get("ML_SERVING_GC_TUNING", "1") == "1":
            # The models and imports are long-lived: move them out of the collector's view and
            # collect young objects less often, so full collections do not stall requests.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)

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
        self.inference_log.close()

    # ---- scoring ------------------------------------------------------------------------

    def _score(self, records: list[dict[str, Any]], endpoint: str) -> tuple[list[Any], str]:
        models = self._ready_models(endpoint)
        start = time.perf_counter()
        proba = models.tabular[SCORER].predict_records(records)
        self.metrics.inference_seconds.labels(endpoint=endpoint).observe(
            time.perf_counter() - start
        )
        version = models.entries[SCORER].label
        self.inference_log.record(models.specs[SCORER], models.entries[SCORER], records, proba)
        threshold = models.threshold
        return [
            ScoreResult(
                probability=float(p),
                **{DECISION: bool(p >= threshold)},
                threshold=threshold,
                model_version=version,
            )
            for p in proba
        ], version

    @bentoml.api(route="/v1/score")
    async def score(self, transaction: Transaction) -> ScoreResult:  # type: ignore[valid-type]
        """The class-1 probability of one row and the declared decision at the threshold."""
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
        scorer = models.tabular.get(role)
        if scorer is None:  # a reload dropped it while this request was routed
            status, message = lineage_path.not_served(models, role)
            self._error("not_served", endpoint, RuntimeError(message))
            raise BentoMLException(message, error_code=HTTPStatus(status))
        start = time.perf_counter()
        values = scorer.predict_records(records)
        self.metrics.inference_seconds.labels(endpoint=f"{role}/{endpoint}").observe(
            time.perf_counter() - start
        )
        self.inference_log.record(models.specs[role], models.entries[role], records, values)
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

    @bentoml.api(route="/search")
    def search(
        self,
        # Postgres text cannot hold NUL: declared, so the schema and the 400 agree.
        query: Annotated[str, Field(min_length=1, max_length=2_000, pattern=NO_NUL)],
        tenant_id: Annotated[str, Field(min_length=1, max_length=200)],
        types: list[str] | None = None,
        tags: list[str] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        mode: Literal["hybrid", "vector", "lexical"] = "hybrid",
    ) -> SearchResult:
        """Hybrid (vector + full-text) search within one tenant's documents."""
        return self.search_path.search(
            self._ready_models("search"),
            query,
            tenant_id,
            types=types,
            tags=tags,
            limit=limit,
            mode=mode,
        )

    # ---- operations ---------------------------------------------------------------------

    @bentoml.api(route="/reload")
    def reload(self, ctx: bentoml.Context, bundle: dict[str, Any] | None = None) -> dict[str, Any]:
        """Switch every worker to the current MLflow `production` versions (API key).

        `bundle`: the serving_bundle manifest of those versions (serving_deployment sends it):
        its set of models is served (lineages it adds get their routes, lineages it drops
        answer 404), with its validated search configuration. Without it, the models served
        now are reloaded, and search keeps its configuration only while the embedder is
        unchanged."""
        reload_path.require_admin_key(ctx)
        return self._reload(bundle)


# GET routes (BentoML APIs are POST): /models describes what this worker serves, /metrics
# every worker's series (BentoML's own /metrics is off with its metrics middleware). Mounted
# at the root, after BentoML's own routes, so they only see paths those do not match.
async def _models_route(_: Request) -> JSONResponse:
    instance = bentoml.get_current_service()
    return JSONResponse(instance.describe())


def _feedback_lookup(name: str) -> tuple[Any, str | None] | None:
    """The served lineage `name`'s spec and the inference log's DSN (feedback_routes)."""
    instance = bentoml.get_current_service()
    served = instance._models.lineage(name) if instance._models is not None else None
    return None if served is None else (served[1], instance.inference_log.settings.dsn)


def _lineage_docs() -> tuple[Any, list[str], dict[str, Any]]:
    """The lineage routes the served generation drops and adds (for /docs.json)."""
    return lineage_path.docs_view(LINEAGES, bentoml.get_current_service()._models)


def _served_docs() -> tuple[list[str], list[str] | None]:
    """(the models with a card route, the lineages that take feedback or None: log off)."""
    instance = bentoml.get_current_service()
    models = instance._models
    if models is None:
        return [], None
    names = card_routes.card_names(models)
    lineages = sorted(spec.name for spec in models.specs.values())
    return names, lineages if instance.inference_log.settings.dsn else None


# Outermost of ours: RED metrics, the optional client key and the concurrency cap
# (serving/edge.py). Then one error body for every API error, 413/415 before BentoML reads a
# body (serving/errors.py); then POST /v1/score served without BentoML's per-request work
# (serving/fastpath.py). The mount comes before BentoML's own /docs.json, so the document
# served is the one that declares those errors (serving/openapi.py).
EDGE = edge.install(MLService, extra_routes=["/models", "/docs.json"])
MLService.add_asgi_middleware(errors.UniformErrors)
# An id per scoring request (X-Request-ID), the key of its inference-log rows and their labels.
MLService.add_asgi_middleware(request_ids.RequestIds)
if os.environ.get("ML_SERVING_LEAN_SCORE", "1") == "1":
    MLService.add_asgi_middleware(
        fastpath.LeanScore,
        service=MLService,
        route="/v1/score",
        api="score",
        method="score_one",
        argument="transaction",
    )
# /v1/models/<name>/predict(/batch) of every lineage the current generation serves (a reload
# may bring lineages this Bento has no route for), 404/503 for the others.
MLService.add_asgi_middleware(lineage_path.LineageRoutes, static=LINEAGES)
MLService.mount_asgi_app(
    Starlette(
        routes=[
            Route("/models", _models_route),
            Route(card_routes.ROUTE, card_routes.card),
            Route("/metrics", metrics_endpoint),
            Route(
                feedback_routes.PATH,
                feedback_routes.feedback_endpoint(_feedback_lookup),
                methods=["POST"],
            ),
            openapi.docs_route(
                MLService, keyed=bool(EDGE.keys), lineages=_lineage_docs, models=_served_docs
            ),
        ]
    ),
    path="/",
)
