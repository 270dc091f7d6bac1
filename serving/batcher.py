"""Cross-request batching for `POST /embed`: one thread per worker runs the texts of many
concurrent requests through the embedder in one call.

Ours rather than BentoML's adaptive batching, which takes one input argument, splits by item
index and answers 503 past `max_latency_ms`; here each job keeps its embedder (and so its
`model_version`) and its own limits, and overload is a clear 429.

- a batch holds jobs of one embedder only (keyed by its model.onnx sha256): a reload that lands
  mid-queue never mixes versions, and each response names the embedder that computed it;
- at most `max_batch_texts` texts a batch (a larger request runs alone, never split);
- the first job of a batch waits at most `max_wait_ms` for company; jobs that queue while a
  batch runs join the next one without waiting;
- the queue is bounded (`max_queue_texts`): past it `submit` raises `Overloaded` at once, and a
  job still queued after `max_latency_ms` is answered `Overloaded` instead of run late;
- a batch that raises is re-run job by job, so an error reaches the request that caused it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MAX_BATCH_TEXTS = 64
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_QUEUE_TEXTS = 4096
DEFAULT_MAX_LATENCY_MS = 5000.0

Result = tuple[np.ndarray, list[bool]]  # (vectors, truncated per text)


class Overloaded(RuntimeError):
    """The worker's embedding queue is full or behind: retry later (429 with Retry-After)."""


class BatcherConfigError(ValueError):
    """An ML_SERVING_EMBED_* variable is not a valid number."""


@dataclass(frozen=True)
class BatchConfig:
    enabled: bool = True
    max_batch_texts: int = DEFAULT_MAX_BATCH_TEXTS
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue_texts: int = DEFAULT_MAX_QUEUE_TEXTS
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS

    @classmethod
    def from_env(cls) -> BatchConfig:
        """ML_SERVING_EMBED_BATCH (1; 0: off), ML_SERVING_EMBED_BATCH_TEXTS,
        ML_SERVING_EMBED_BATCH_WAIT_MS, ML_SERVING_EMBED_QUEUE_TEXTS,
        ML_SERVING_EMBED_MAX_LATENCY_MS."""

        def number(name: str, default: float, kind: type) -> Any:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return kind(default)
            try:
                value = kind(raw)
            except ValueError:
                raise BatcherConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < 0 or (kind is int and value == 0):
                raise BatcherConfigError(f"{name} must be positive, got {raw!r}")
            return value

        return cls(
            enabled=os.environ.get("ML_SERVING_EMBED_BATCH", "1") != "0",
            max_batch_texts=number("ML_SERVING_EMBED_BATCH_TEXTS", DEFAULT_MAX_BATCH_TEXTS, int),
            max_wait_ms=number("ML_SERVING_EMBED_BATCH_WAIT_MS", DEFAULT_MAX_WAIT_MS, float),
            max_queue_texts=number("ML_SERVING_EMBED_QUEUE_TEXTS", DEFAULT_MAX_QUEUE_TEXTS, int),
            max_latency_ms=number("ML_SERVING_EMBED_MAX_LATENCY_MS", DEFAULT_MAX_LATENCY_MS, float),
        )


@dataclass
class _Job:
    key: str
    embedder: Any
    texts: list[str]
    enqueued: float
    future: Future = field(default_factory=Future)


class EmbedBatcher:
    """Jobs in (embedder, its sha256, texts), futures of (vectors, truncated) out.

    `on_batch(texts, jobs, seconds)` is called after each batch (the service's metrics)."""

    def __init__(
        self,
        config: BatchConfig | None = None,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.config = config or BatchConfig()
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._queued_texts = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="ml-assets-embed-batcher")
        self._thread.daemon = True
        self._thread.start()

    def submit(self, embedder: Any, key: str, texts: Sequence[str]) -> Future:
        """Queue `texts` for `embedder` (whose model.onnx sha256 is `key`); raises Overloaded
        at once when the queue holds max_queue_texts already."""
        job = _Job(key, embedder, list(texts), time.monotonic())
        with self._cond:
            if self._closed:
                raise Overloaded("the embedding batcher is shutting down")
            limit = self.config.max_queue_texts
            if self._queue and self._queued_texts + len(job.texts) > limit:
                raise Overloaded(
                    f"this worker's embedding queue holds {self._queued_texts} texts, its limit "
                    f"is {limit} (ML_SERVING_EMBED_QUEUE_TEXTS)"
                )
            self._queue.append(job)
            self._queued_texts += len(job.texts)
            self._cond.notify()
        return job.future

    def embed(self, embedder: Any, key: str, texts: Sequence[str]) -> Result:
        """submit() and wait (bounded: the latency cap, then the batch's own run)."""
        return self.submit(embedder, key, texts).result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def queued_texts(self) -> int:
        return self._queued_texts

    # ---- the batching thread -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _take(self) -> list[_Job] | None:
        """The next batch (oldest job first, its embedder only, up to max_batch_texts); None
        once closed and drained."""
        cfg = self.config
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue[0]
            deadline = first.enqueued + cfg.max_wait_ms / 1000
            while not self._closed and self._texts_for(first.key) < cfg.max_batch_texts:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            now, late = time.monotonic(), cfg.max_latency_ms / 1000
            batch: list[_Job] = []
            kept: deque[_Job] = deque()
            size = 0
            for job in self._queue:
                fits = not batch or size + len(job.texts) <= cfg.max_batch_texts
                if job.key != first.key or not fits:
                    kept.append(job)
                    continue
                self._queued_texts -= len(job.texts)
                if not job.future.set_running_or_notify_cancel():
                    continue  # the request was cancelled (say its client went away)
                if now - job.enqueued > late:
                    job.future.set_exception(
                        Overloaded(
                            f"the request waited {(now - job.enqueued) * 1000:.0f} ms in this "
                            f"worker's embedding queue, past its cap of {cfg.max_latency_ms:.0f} "
                            "ms (ML_SERVING_EMBED_MAX_LATENCY_MS)"
                        )
                    )
                    continue
                batch.append(job)
                size += len(job.texts)
            self._queue = kept
            return batch

    def _texts_for(self, key: str) -> int:
        return sum(len(j.texts) for j in self._queue if j.key == key)

    def _run(self, batch: list[_Job]) -> None:
        start = time.perf_counter()
        texts = [t for job in batch for t in job.texts]
        try:
            vectors, truncated = batch[0].embedder.embed_flagged(texts)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
            else:  # find the request that fails: each job alone
                for job in batch:
                    try:
                        job.future.set_result(job.embedder.embed_flagged(job.texts))
                    except Exception as job_exc:
                        job.future.set_exception(job_exc)
        else:
            offset = 0
            for job in batch:
                end = offset + len(job.texts)
                job.future.set_result((vectors[offset:end], list(truncated[offset:end])))
                offset = end
        if self._on_batch is not None:
            self._on_batch(len(texts), len(batch), time.perf_counter() - start)
