"""The service's model lifecycle: which generation of models a worker serves, how it starts on
its Bento's bundle (or the release another worker of the server wrote), follows that release,
and switches on `POST /reload`. Mixed into the BentoML service class (serving/service.py),
which keeps the API.
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException, ServiceUnavailable

from ml_assets.platform.serving_bundle import BundleIntegrityError, ModelEntry
from serving import bundled, reload_path, runtime
from serving.bundled import BUNDLE_DECLARED, BUNDLE_SEARCH, ENTRIES, SCORE_ROUTE
from serving.cache import EmbeddingCache
from serving.metrics import Metrics

log = logging.getLogger("bentoml.ml_assets")  # BentoML formats and ships "bentoml.*"


class ModelLifecycle:
    """The generation a worker serves (`_models`), swapped as one reference."""

    metrics: Metrics
    cache: EmbeddingCache
    _models: runtime.LoadedModels | None
    _load_error: str | None
    _reload_lock: threading.Lock
    _release: Any
    _server: str

    def _start_release(self) -> None:
        """Serve the latest release another worker of this server wrote, or else the Bento's
        own bundle (a restarted server starts on its bundle, not an earlier server's reload)."""
        release = runtime.read_release(self._release, self._server)
        if release is None:
            release = runtime.Release(0, ENTRIES, BUNDLE_SEARCH, BUNDLE_DECLARED)
        try:
            self._install(self._load(release))
        except Exception as exc:  # not ready: /readyz says 503 and the log names the file
            self._load_error = str(exc)
            log.error("models not loaded, service not ready: %s", exc)

    def _load(self, release: runtime.Release) -> runtime.LoadedModels:
        """The release's models, verified (a model unchanged from the current generation keeps
        its session). /v1/score's response model is this Bento's: a generation whose score
        route names another decision field is refused."""
        models = runtime.load_models(release, bundled.locate, previous=self._models)
        field = models.score_route.decision_field if models.score_route else None
        if field != SCORE_ROUTE.decision_field:
            raise BundleIntegrityError(
                f"/v1/score of this Bento answers {SCORE_ROUTE.decision_field!r}, the bundle's "
                f"score route declares {field!r}: serve it with a Bento built from that bundle"
            )
        return models

    def _install(self, models: runtime.LoadedModels) -> None:
        old = self._models
        self._models = models  # one reference swap: requests in flight keep `old`
        self._load_error = None
        self.cache.clear()  # keyed by the embedder's hash anyway; a reload starts it afresh
        self.metrics.cache_entries.set(0)
        # A bundle may add or drop models: a model no longer served reads 0.
        for role, entry in (old.entries if old is not None else {}).items():
            if models.entries.get(role) != entry:
                self._mark_loaded(entry, 0)
        for entry in models.entries.values():
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
        release = runtime.read_release(self._release, self._server)
        current = self._models.generation if self._models else -1
        if release is None or release.generation <= current:
            return
        with self._reload_lock:
            self._install(self._load(release))

    def _error(self, kind: str, endpoint: str, exc: Exception) -> None:
        self.metrics.errors.labels(endpoint=endpoint, type=kind).inc()
        log.info("%s %s: %s", endpoint, kind, exc)

    def _ready_models(self, endpoint: str) -> runtime.LoadedModels:
        models = self._models
        if models is None:
            self._error("not_ready", endpoint, RuntimeError(self._load_error))
            raise ServiceUnavailable(f"models are not loaded: {self._load_error}")
        return models

    def describe(self) -> dict[str, Any]:
        models = self._models
        return {
            "ready": models is not None,
            "error": self._load_error,
            "generation": None if models is None else models.generation,
            "threshold": None if models is None else models.threshold,
            **runtime.describe(models),
        }

    def _reload(self, bundle: dict[str, Any] | None) -> dict[str, Any]:
        """Switch to the production versions of the set `bundle` pins (POST /reload)."""
        start = time.perf_counter()
        entries, search, declared = reload_path.production_set(
            self._models, ENTRIES, bundle, self._error
        )
        with self._reload_lock:
            current = self._models
            if (
                current is not None
                and current.entries == entries
                and current.search == search
                and current.declared == declared
            ):
                return {"changed": False, **self.describe(), "seconds": 0.0}
            release = runtime.read_release(self._release, self._server)
            generation = max(
                current.generation if current else 0, release.generation if release else 0
            )
            try:
                models = self._load(runtime.Release(generation + 1, entries, search, declared))
            except BundleIntegrityError as exc:
                self._error("refused", "reload", exc)
                raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc
            self._install(models)
            runtime.write_release(self._release, models, self._server)
        self.metrics.reloads.inc()
        return {"changed": True, **self.describe(), "seconds": time.perf_counter() - start}
