"""reindex_sensor: a corpus change, a new production embedder (the SearchIndex's
`registered_model`) or an operator's reindex request (`ml.embedding.reindex.request.v1`)
triggers one reindex."""

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore, latest_ref
from ml_assets.search import reindex_requests
from ml_assets.search.corpus import load_corpus
from ml_assets.search.reindex_requests import Request
from ml_assets.search.spec import SearchIndexSpec, shipped

# A request row can commit after a later one (a long transaction, another host's clock): each
# tick reads this far back from the newest request seen, and the cursor keeps the ids it
# handled in that window, so such a row is honoured once, not skipped.
REQUEST_LOOKBACK = timedelta(days=1)

# What a reindex reads or writes: while a run or backfill of any of them is in flight,
# the sensor requests nothing (its next stage would read half-written state or repeat work).
REINDEX_ASSETS = ("search_corpus", "embedding_model_onnx", "embedding_shards", "embedding_index")
# A run of a whole asset job may carry no asset selection: these jobs write those assets.
REINDEX_JOBS = frozenset(
    {"search_lineage_job", "reindex_corpus_job", "reindex_shards_job", "reindex_job"}
)
# A backfill in these states is still launching runs or waiting for the ones it launched.
BACKFILL_BUSY = ("REQUESTED", "CANCELING", "FAILING")
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


reindex_job = define_asset_job(
    "reindex_job",
    selection=AssetSelection.assets("search_corpus", "embedding_index", "search_quality_report"),
    description="Reload the corpus, update the pgvector index, re-run the quality report.",
)


@dataclass(frozen=True)
class IndexInputs:
    corpus_sha256: str
    model_sha256: str | None  # the production embedder's file, if one is promoted
    # The corpus file those bytes were read from: the run reindexes exactly what was watched.
    corpus_path: str | None = None


# The cursor: {"corpus": sha256, "model": sha256 | null} (the inputs last indexed), plus, once a
# request was seen, "requests": {"after": ISO time, "seen": [event ids handled since then]}.


def _load(cursor: str | None) -> dict:
    return json.loads(cursor) if cursor else {}


def _dump(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


def _run_config(current: IndexInputs) -> dict:
    ops: dict = {}
    if current.corpus_path:
        ops["search_corpus"] = {"config": {"source_path": current.corpus_path}}
    if current.model_sha256:
        ops["embedding_index"] = {"config": {"model_sha256": current.model_sha256}}
    return {"ops": ops} if ops else {}


def _tags(current: IndexInputs) -> dict[str, str]:
    return {
        "ml-assets/corpus_sha256": current.corpus_sha256,
        "ml-assets/model_sha256": current.model_sha256 or "",
    }


def decide(cursor: str | None, current: IndexInputs) -> tuple[RunRequest | None, str]:
    """Pure decision: a run request when the inputs differ from the cursor's, and the new cursor."""
    previous = _load(cursor)
    state = {"corpus": current.corpus_sha256, "model": current.model_sha256}
    new_cursor = _dump({**previous, **state})
    if cursor is not None and {k: previous[k] for k in state if k in previous} == state:
        return None, new_cursor
    model = (current.model_sha256 or "upstream")[:12]
    request = RunRequest(
        run_key=f"corpus:{current.corpus_sha256[:12]}@model:{model}",
        run_config=_run_config(current),
        tags=_tags(current),
    )
    return request, new_cursor


def requests_after(cursor: str | None) -> datetime | None:
    """Where the next read of request rows starts (None: from the first)."""
    after = _load(cursor).get("requests", {}).get("after")
    return datetime.fromisoformat(after) if after else None


def honour_requests(
    cursor: str | None, current: IndexInputs, requests: Sequence[Request]
) -> tuple[list[RunRequest], list[Request], str | None]:
    """Pure decision: one run per request not handled yet, the invalid ones, the new cursor.

    `requests` are the rows after `requests_after(cursor)`. A request's run indexes the current
    inputs, so it also stands for a corpus or model change seen in the same tick.
    """
    previous = _load(cursor)
    part = previous.get("requests", {})
    seen = set(part.get("seen", []))
    after = datetime.fromisoformat(part["after"]) if part.get("after") else None
    fresh = [
        r for r in requests if r.event_id not in seen and (after is None or r.occurred_at > after)
    ]
    if not fresh:
        return [], [], cursor
    runs = [
        RunRequest(
            run_key=f"reindex-request:{r.event_id}",
            run_config=_run_config(current),
            tags={
                **_tags(current),
                "ml-assets/reindex_request": r.event_id,
                "ml-assets/requested_by": r.actor or "",
                "ml-assets/reason": r.reason or "",
            },
        )
        for r in fresh
        if r.error is None
    ]
    new_after = max(r.occurred_at for r in requests) - REQUEST_LOOKBACK
    if after is not None:
        new_after = max(after, new_after)
    handled = seen | {r.event_id for r in fresh}
    window = sorted(
        r.event_id for r in requests if r.event_id in handled and r.occurred_at > new_after
    )
    state = {**previous, "requests": {"after": new_after.isoformat(), "seen": window}}
    if runs:
        state.update(corpus=current.corpus_sha256, model=current.model_sha256)
    return runs, [r for r in fresh if r.error is not None], _dump(state)


def corpus_source(spec: SearchIndexSpec | None = None) -> Path:
    """The corpus the sensor watches: ML_CORPUS_PATH, or the index's declared corpus."""
    configured = os.environ.get("ML_CORPUS_PATH")
    return Path(configured) if configured else (spec or shipped()).corpus()


def production_embedder_sha(mlflow: MlflowResource, registered_model: str) -> str | None:
    """The sha256 of the index's embedder at `production` (its YAML's `registered_model`)."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow.client.get_model_version_by_alias(registered_model, PRODUCTION_ALIAS)
    except MlflowException:
        return None
    return version.tags.get("sha256")


def due_runs(
    context: SensorEvaluationContext,
    spec: SearchIndexSpec,
    mlflow: MlflowResource,
    postgres: PostgresResource,
) -> tuple[Any, IndexInputs, list[RunRequest], str]:
    """(the corpus as loaded, what the index should be built from now, the reindex runs due,
    the new cursor):
    operators' requests first (each honoured or logged as refused), else a changed corpus or
    production embedder."""
    path = corpus_source(spec)
    load = load_corpus(path)
    current = IndexInputs(
        corpus_sha256=load.corpus_sha256,
        model_sha256=production_embedder_sha(mlflow, spec.registered_model),
        corpus_path=str(path),
    )
    requests = reindex_requests.read_requests(postgres.dsn, after=requests_after(context.cursor))
    runs, rejected, cursor = honour_requests(context.cursor, current, requests)
    for r in rejected:
        context.log.warning(f"reindex request {r.event_id} not honoured: {r.error}")
    if not runs:
        request, cursor = decide(cursor, current)
        runs = [request] if request else []
    return load, current, runs, cursor


def in_flight(instance: DagsterInstance) -> list[str]:
    """The runs and asset backfills not finished yet that materialize what a reindex reads."""
    keys = {AssetKey(a) for a in REINDEX_ASSETS}
    busy = [
        f"run {r.run_id[:8]} ({r.job_name})"
        for r in instance.get_runs(RunsFilter(statuses=IN_FLIGHT), limit=200)
        if r.job_name in REINDEX_JOBS or keys & set(r.asset_selection or ())
    ]
    for b in instance.get_backfills(limit=50):
        if b.status.value in BACKFILL_BUSY and keys & set(b.asset_selection or ()):
            busy.append(f"backfill {b.backfill_id}")
    return busy


def hold(runs: list[RunRequest], export_ready: bool, busy: list[str]) -> str | None:
    """Pure decision: why the due reindex runs wait (None: request them now). A run of
    reindex_job would fail loading embedding_model_onnx, or race a run writing its inputs."""
    if not runs:
        return None
    if busy:
        return f"a reindex is due; waiting for {', '.join(busy)} to finish"
    if not export_ready:
        return (
            "a reindex is due; waiting for embedding_model_onnx (embedding_index embeds with "
            "it): materialize it (search_lineage_job, or `ml-assets up`)"
        )
    return None


@dataclass(frozen=True)
class Due:
    """One tick of a reindex sensor: its context and resources, and what `due_runs` found."""

    context: SensorEvaluationContext
    postgres: PostgresResource
    store: ArtifactStore
    load: Any
    current: IndexInputs
    runs: list[RunRequest]
    cursor: str


def reindex_sensor_of(
    spec: SearchIndexSpec,
    jobs: Sequence[JobDefinition],
    tick: Callable[[Due], SensorResult],
    description: str,
) -> SensorDefinition:
    """`reindex_sensor` of a declared index at its interval: `tick` decides on what is due."""

    @sensor(
        name="reindex_sensor",
        jobs=list(jobs),
        minimum_interval_seconds=spec.reindex_interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )
    def reindex_sensor(
        context: SensorEvaluationContext,
        mlflow: MlflowResource,
        postgres: PostgresResource,
        store: ArtifactStore,
    ) -> SensorResult:
        load, current, runs, cursor = due_runs(context, spec, mlflow, postgres)
        return tick(Due(context, postgres, store, load, current, runs, cursor))

    return reindex_sensor


def _monolithic_tick(due: Due) -> SensorResult:
    export_ready = latest_ref(due.store.base_dir, "embedding_model_onnx") is not None
    runs = due.runs
    wait = hold(runs, export_ready, in_flight(due.context.instance) if runs else [])
    if wait:
        # The cursor stays: the next tick decides again on what is due then.
        return SensorResult(skip_reason=SkipReason(wait), cursor=due.context.cursor)
    if not runs:
        return SensorResult(
            skip_reason=SkipReason("corpus and production embedder unchanged, no reindex request"),
            cursor=due.cursor,
        )
    return SensorResult(run_requests=runs, cursor=due.cursor)


def build_reindex_sensor(spec: SearchIndexSpec) -> SensorDefinition:
    """The reindex sensor of a declared index: its corpus, its interval."""
    return reindex_sensor_of(
        spec,
        [reindex_job],
        _monolithic_tick,
        "Watches the corpus content hash, the embedder@production and reindex requests.",
    )


# The shipped index's sensor, for code that uses it without the defs folder.
reindex_sensor = build_reindex_sensor(shipped())
