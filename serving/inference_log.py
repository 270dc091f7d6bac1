"""The inference log: a sample of each served lineage's scoring requests, in Postgres.

One table per lineage, `inference_log__<name>`: the request id (also the response's
X-Request-ID header), the row's index in its request, the time, the model version and the ONNX
sha256 that answered, the features (a feature the YAML marks `sensitive: true` as the sha256 of
its value), the output and the request's latency so far. Rows older than the lineage's
`monitoring.retention_days` are deleted by the writer as it goes, so the table stays bounded.

Writes leave the request path: a request only appends to a bounded in-process queue (never
blocking); one background thread per worker drains it in batches with COPY. When Postgres is
slow or gone, what does not fit the queue and every batch that fails to land is dropped and
counted (`ml_assets_inference_log_records{outcome="dropped"}`); the writer reconnects by itself.

Configuration: `monitoring.sample_rate` / `retention_days` of the lineage's YAML (carried in the
bundle entry's lineage), overridden for every lineage of a server by ML_INFERENCE_LOG_SAMPLE_RATE
and ML_INFERENCE_LOG_RETENTION_DAYS. The DSN is ML_INFERENCE_LOG_DSN, else ML_VECTOR_PG_DSN;
without either (or with ML_INFERENCE_LOG=0) nothing is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ml_assets.monitoring.inference_tables import ensure_tables, log_table, retention_override
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.serving_bundle import ModelEntry
from serving import request_ids

log = logging.getLogger("bentoml.ml_assets")

COLUMNS = (
    "request_id",
    "row_index",
    "logged_at",
    "registered_model",
    "model_version",
    "onnx_sha256",
    "features",
    "output",
    "latency_ms",
)
PRUNE_EVERY_S = 3600.0


def hashed(value: Any) -> str:
    """What the log keeps of a sensitive feature: the sha256 of its JSON text."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def loggable(spec: LineageSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    sensitive = {f.name for f in spec.features if f.sensitive}
    return {k: hashed(v) if k in sensitive else v for k, v in row.items()}


@dataclass(frozen=True)
class LogSettings:
    dsn: str | None
    sample_rate: float | None  # None: each lineage's own
    retention_days: int | None
    queue_max: int = 10_000
    batch_max: int = 500
    flush_s: float = 0.2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LogSettings:
        env = os.environ if env is None else env
        dsn = env.get("ML_INFERENCE_LOG_DSN") or env.get("ML_VECTOR_PG_DSN") or None
        if env.get("ML_INFERENCE_LOG", "1") == "0":
            dsn = None
        rate = env.get("ML_INFERENCE_LOG_SAMPLE_RATE")
        settings = cls(
            dsn=dsn,
            sample_rate=None if rate is None else float(rate),
            retention_days=retention_override(env),
            queue_max=int(env.get("ML_INFERENCE_LOG_QUEUE", "10000")),
        )
        if settings.sample_rate is not None and not 0.0 <= settings.sample_rate <= 1.0:
            raise ValueError(f"ML_INFERENCE_LOG_SAMPLE_RATE={rate}: expected [0, 1]")
        return settings


@dataclass(frozen=True)
class _Item:
    lineage: str
    row: tuple[Any, ...]
    retention_days: int


class InferenceLog:
    """The worker's sampler, bounded queue and background COPY writer."""

    def __init__(self, settings: LogSettings, registry: Any = None) -> None:
        import prometheus_client as prom

        self.settings = settings
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=settings.queue_max)
        self._records = prom.Counter(
            "ml_assets_inference_log_records",
            "Scoring rows for the inference log, by lineage and outcome (logged or dropped)",
            ["lineage", "outcome"],
            registry=registry if registry is not None else prom.REGISTRY,
        )
        self._queued = prom.Gauge(
            "ml_assets_inference_log_queued",
            "Rows waiting in the inference log's queue (summed over live workers)",
            multiprocess_mode="livesum",
            registry=registry if registry is not None else prom.REGISTRY,
        )
        self.logged = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._conn: Any = None
        self._ready: set[str] = set()
        self._pruned: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        if settings.dsn:
            self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def queued(self) -> int:
        return self._queue.qsize()

    def sample_rate(self, spec: LineageSpec) -> float:
        own = self.settings.sample_rate
        return spec.monitoring.sample_rate if own is None else own

    def record(
        self,
        spec: LineageSpec,
        entry: ModelEntry,
        rows: Sequence[Mapping[str, Any]],
        outputs: Sequence[float],
    ) -> None:
        """Queue a sampled request's rows; never blocks, never raises into the request."""
        if not self.enabled or random.random() >= self.sample_rate(spec):
            return
        ctx = request_ids.current()
        if ctx is None:  # not an HTTP scoring request: nothing a label could come back for
            return
        now = datetime.now(UTC)
        latency_ms = (time.perf_counter() - ctx.started) * 1000.0
        days = self.settings.retention_days or spec.monitoring.retention_days
        sha = entry.files["model.onnx"]
        for i, (row, out) in enumerate(zip(rows, outputs, strict=True)):
            item = _Item(
                spec.name,
                (
                    ctx.request_id,
                    i,
                    now,
                    entry.registered_model,
                    entry.version,
                    sha,
                    json.dumps(loggable(spec, row)),
                    float(out),
                    latency_ms,
                ),
                days,
            )
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._drop(spec.name, len(rows) - i)
                break
        self._queued.set(self._queue.qsize())

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    # ---- the writer thread ----------------------------------------------------------------

    def _drop(self, lineage: str, n: int) -> None:
        self.dropped += n
        self._records.labels(lineage=lineage, outcome="dropped").inc(n)

    def _take(self) -> list[_Item]:
        try:
            batch = [self._queue.get(timeout=self.settings.flush_s)]
        except queue.Empty:
            return []
        while len(batch) < self.settings.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            self._queued.set(self._queue.qsize())
            by_lineage: dict[str, list[_Item]] = {}
            for item in batch:
                by_lineage.setdefault(item.lineage, []).append(item)
            for lineage, items in by_lineage.items():
                try:
                    self._write(lineage, items)
                except Exception as exc:  # Postgres slow or gone: drop, count, reconnect later
                    self._drop(lineage, len(items))
                    log.warning(
                        "inference log: %d rows of %s dropped: %s", len(items), lineage, exc
                    )
                    self._disconnect()
                    self._stop.wait(0.5)
                else:
                    self.logged += len(items)
                    self._records.labels(lineage=lineage, outcome="logged").inc(len(items))

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._conn = psycopg.connect(
                self.settings.dsn,
                autocommit=True,
                connect_timeout=2,
                options="-c statement_timeout=2000 -c lock_timeout=1000",
            )
            self._ready.clear()
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def _write(self, lineage: str, items: list[_Item]) -> None:
        from psycopg import sql

        conn = self._connection()
        if lineage not in self._ready:
            ensure_tables(conn, lineage)
            self._ready.add(lineage)
        table = sql.Identifier(log_table(lineage))
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
                for item in items:
                    copy.write_row(item.row)
        if time.monotonic() - self._pruned.get(lineage, float("-inf")) > PRUNE_EVERY_S:
            conn.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE logged_at < now() - make_interval(days => %s)"
                ).format(table),
                (items[-1].retention_days,),
            )
            self._pruned[lineage] = time.monotonic()
