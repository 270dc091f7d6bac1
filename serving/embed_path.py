"""What the service's texts go through on their way to the embedder: the cache
(serving/cache.py), then the cross-request batcher (serving/batcher.py), or with batching off
(`ML_SERVING_EMBED_BATCH=0`) one embedder call per request on a thread pool as wide as the
service's threads (what a sync BentoML API gets).

`POST /embed` awaits `embed()` on the event loop; `/search` (a sync API, one query) calls the
embedder through `cached()` directly.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

from ml_assets.platform.serving_bundle import EMBEDDER
from serving.batcher import BatchConfig, EmbedBatcher, Overloaded
from serving.cache import CachedEmbedder, EmbeddingCache
from serving.edge import RETRY_AFTER_S
from serving.metrics import Metrics

__all__ = ["EmbedPath", "Overloaded", "too_many"]


def too_many(exc: Overloaded) -> JSONResponse:
    """429 with Retry-After and the uniform error body, naming the limit that was hit."""
    return JSONResponse(
        {"error": f"{exc}; retry after {RETRY_AFTER_S} s"},
        status_code=429,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class EmbedPath:
    def __init__(self, metrics: Metrics, cache: EmbeddingCache, config: BatchConfig) -> None:
        self.metrics, self.cache, self.config = metrics, cache, config
        self.batcher: EmbedBatcher | None = None
        self._pool: ThreadPoolExecutor | None = None
        if config.enabled:
            self.batcher = EmbedBatcher(config, self._count_batch)
        else:
            threads = int(os.environ.get("ML_SERVING_THREADS", "4"))
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ml-assets-embed")

    @classmethod
    def from_env(cls, metrics: Metrics, cache: EmbeddingCache) -> EmbedPath:
        return cls(metrics, cache, BatchConfig.from_env())

    def _count_batch(self, texts: int, requests: int, _seconds: float) -> None:
        self.metrics.embed_batch_texts.observe(texts)
        self.metrics.embed_batch_requests.observe(requests)

    def _count_lookups(self, endpoint: str, hits: int, misses: int) -> None:
        if hits:
            self.metrics.cache_lookups.labels(endpoint=endpoint, result="hit").inc(hits)
        if misses:
            self.metrics.cache_lookups.labels(endpoint=endpoint, result="miss").inc(misses)
            self.metrics.cache_entries.set(len(self.cache))

    def cached(self, models: Any, endpoint: str) -> CachedEmbedder:
        """The generation's embedder behind the cache (keyed by its model.onnx sha256)."""
        sha = models.entries[EMBEDDER].files["model.onnx"]
        return CachedEmbedder(
            self.cache,
            models.embedder,
            sha,
            lambda hits, misses: self._count_lookups(endpoint, hits, misses),
        )

    async def embed(
        self, models: Any, texts: list[str], endpoint: str = "embed"
    ) -> tuple[np.ndarray, list[bool]]:
        """Vectors and truncation flags of `texts` with `models.embedder` (raises Overloaded
        when this worker's batcher is full or behind)."""
        sha = models.entries[EMBEDDER].files["model.onnx"]
        lookup = self.cache.lookup(sha, texts)
        self._count_lookups(endpoint, lookup.hits, lookup.misses)
        if lookup.missing:
            if self.batcher is not None:
                future = self.batcher.submit(models.embedder, sha, lookup.new_texts)
                vectors, truncated = await asyncio.wrap_future(future)
            else:
                loop = asyncio.get_running_loop()
                vectors, truncated = await loop.run_in_executor(
                    self._pool, models.embedder.embed_flagged, lookup.new_texts
                )
            self.cache.fill(lookup, vectors, truncated)
        return self.cache.assemble(lookup)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
