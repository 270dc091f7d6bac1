"""reindex_sensor of a sharded index: the same triggers as the monolithic one (corpus hash,
the embedder@production, operator requests), driven through three stages of runs:

1. `reindex_corpus_job` (search_corpus), unless its latest materialization already holds
   the corpus the sensor hashed;
2. one `reindex_shards_job` run per shard not yet done for that corpus and model (a shard's
   state in Postgres is the proof, so after an edit only the shards it touched run);
3. `reindex_job` (embedding_index + search_quality_report) once every shard is done.

Every run key derives from the reindex's own key (`<key>/corpus`, `<key>/shard:<k>`,
`<key>/index`), so a daemon that restarts and evaluates again requests nothing twice: Dagster
skips a run key it has seen. A failed shard run is not requested again; retry it from the
partition view (re-execute keeps its config), and the next tick moves on to the index.

A stage is requested only once what it reads exists: no shard run before the embedder export
is materialized, nothing while a run or backfill that writes the corpus, the export, a shard
or the index is in flight (say `ml-assets up`'s first pass); the tick's skip reason names
what it waits for.
"""

from __future__ import annotations

import json

from dagster import (
    AssetSelection,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorResult,
    SkipReason,
    define_asset_job,
)

from ml_assets.components.search_index.assets import model_sha_of
from ml_assets.components.search_index.reindex_sensor import Due, in_flight, reindex_sensor_of
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.resources.storage import latest_ref
from ml_assets.search.shards import incomplete, shard_keys, shard_status
from ml_assets.search.spec import SearchIndexSpec
from ml_assets.search.tables import connect

# What one shard run asks Kubernetes for (K8sRunLauncher reads this tag and merges it over
# runK8sConfig in deploy/helm/dagster-values.yaml): one ONNX thread per run by default, so one
# core. `shard_run_tags` in the SearchIndex YAML replaces it (more threads, a GPU node).
SHARD_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "1", "memory": "1536Mi"},
            "limits": {"cpu": "1", "memory": "3Gi"},
        }
    }
}
K8S_TAG = "dagster-k8s/config"
# Every shard run carries it: the run queue's tag limit (deploy/helm/dagster-values.yaml) caps
# how many shard runs hold run slots at once, leaving room for the other runs.
SHARD_RUN_TAG = ("ml-assets/run", "shard")


def sharded_jobs(spec: SearchIndexSpec) -> tuple[JobDefinition, ...]:
    """The three stages' jobs; the shard job carries the per-run Kubernetes resources."""
    corpus_job = define_asset_job(
        "reindex_corpus_job",
        selection=AssetSelection.assets("search_corpus"),
        description="Reload the corpus (the first stage of a sharded reindex).",
    )
    shards_job = define_asset_job(
        "reindex_shards_job",
        selection=AssetSelection.assets("embedding_shards"),
        description="Embed one shard of the corpus (one run per partition).",
        tags={
            K8S_TAG: json.dumps(SHARD_K8S_CONFIG, sort_keys=True),
            SHARD_RUN_TAG[0]: SHARD_RUN_TAG[1],
            **spec.shard_run_tags,
        },
    )
    index_job = define_asset_job(
        "reindex_job",
        selection=AssetSelection.assets("embedding_index", "search_quality_report"),
        description="Build the index from every shard, switch it live, re-run the quality report.",
    )
    return corpus_job, shards_job, index_job


def start(cursor: str | None, runs: list[RunRequest]) -> str | None:
    """The cursor with the newest requested reindex as the pending one (runs: what the
    monolithic decision functions asked for)."""
    if not runs:
        return cursor
    state = json.loads(cursor) if cursor else {}
    last = runs[-1]
    state["pending"] = {"key": last.run_key, "run_config": last.run_config, "tags": last.tags}
    return json.dumps(state, sort_keys=True)


def _ops(run_config: dict, *names: str) -> dict:
    ops = {k: v for k, v in run_config.get("ops", {}).items() if k in names}
    return {"ops": ops} if ops else {}


def plan(
    cursor: str | None,
    corpus_ready: bool,
    status: dict[str, str] | None,
    *,
    export_ready: bool = True,
    busy: list[str] | None = None,
    judged: bool = False,
) -> tuple[list[RunRequest], str | None, str]:
    """Pure decision: the next stage's run requests for the pending reindex, the new cursor,
    and what the tick did (for the skip reason or the log).

    `export_ready`: embedding_model_onnx is materialized (the shard runs load it); `busy`:
    the runs and backfills in flight that write what the reindex reads; `judged`: the latest
    index holds this corpus and model and the latest quality report is over it (say `ml-assets
    up`'s first backfill built both), so only an operator's request runs the index again."""
    state = json.loads(cursor) if cursor else {}
    pending = state.get("pending")
    if not pending:
        return [], cursor, "no reindex pending"
    if busy:
        return [], cursor, f"{pending['key']}: waiting for {', '.join(busy)} to finish"
    key, config, tags = pending["key"], pending["run_config"] or {}, pending["tags"] or {}
    # The shards embed with the model the index is built with (the production embedder's).
    model = config.get("ops", {}).get("embedding_index", {}).get("config", {})
    shard_config = {"ops": {"embedding_shards": {"config": dict(model)}}} if model else {}
    if not corpus_ready:
        run = RunRequest(
            job_name="reindex_corpus_job",
            run_key=f"{key}/corpus",
            run_config=_ops(config, "search_corpus"),
            tags=tags,
        )
        return [run], cursor, f"{key}: corpus"
    if not export_ready:
        return (
            [],
            cursor,
            f"{key}: waiting for embedding_model_onnx (the shard runs embed with it): "
            "materialize it (search_lineage_job, or `ml-assets up`)",
        )
    todo = incomplete(status or {})
    if todo:
        runs = [
            RunRequest(
                job_name="reindex_shards_job",
                partition_key=k,
                run_key=f"{key}/shard:{k}",
                run_config=shard_config,
                tags=tags,
            )
            for k in todo
        ]
        return runs, cursor, f"{key}: shards {', '.join(todo)} not done"
    if judged and "ml-assets/reindex_request" not in tags:
        state.pop("pending")
        return (
            [],
            json.dumps(state, sort_keys=True),
            (
                f"{key}: every shard done; the index and its quality report already hold this "
                "corpus and model"
            ),
        )
    run = RunRequest(
        job_name="reindex_job",
        run_key=f"{key}/index",
        run_config=_ops(config, "embedding_index"),
        tags=tags,
    )
    state.pop("pending")
    return [run], json.dumps(state, sort_keys=True), f"{key}: every shard done, index"


def judged(base_dir: str, corpus: ArtifactRef, model_sha: str) -> bool:
    """Whether the latest index was built from `corpus` with `model_sha` and the latest
    search_quality_report judged exactly that index."""
    index = latest_ref(base_dir, "embedding_index")
    report = latest_ref(base_dir, "search_quality_report")
    if index is None or report is None or index.extra.get("model_sha256") != model_sha:
        return False
    return _over(index, "search_corpus", corpus.sha256) and _over(
        report, "embedding_index", index.sha256
    )


def _over(ref: ArtifactRef, asset: str, sha256: str) -> bool:
    return any(link.get("asset") == asset and link.get("sha256") == sha256 for link in ref.lineage)


def build_sharded_reindex_sensor(
    spec: SearchIndexSpec, jobs: tuple[JobDefinition, ...]
) -> SensorDefinition:
    """The reindex sensor of a sharded index: corpus run, then shard runs, then the index."""
    n = int(spec.shards or 0)

    def tick(due: Due) -> SensorResult:
        cursor = start(due.cursor, due.runs)
        base_dir = due.store.base_dir
        corpus = latest_ref(base_dir, "search_corpus")
        current = due.current
        ready = corpus is not None and corpus.extra.get("corpus_sha256") == current.corpus_sha256
        model = latest_ref(base_dir, "embedding_model_onnx")
        status = {k: "missing" for k in shard_keys(n)}
        done = False
        if ready and model is not None:
            model_sha = model_sha_of(model, spec.variant, current.model_sha256)
            with connect(due.postgres.dsn) as conn:
                status = shard_status(conn, due.load.documents, n, model_sha)
            done = judged(base_dir, corpus, model_sha)
        planned, cursor, what = plan(
            cursor,
            ready,
            status,
            export_ready=model is not None,
            busy=in_flight(due.context.instance),
            judged=done,
        )
        if not planned:
            return SensorResult(skip_reason=SkipReason(what), cursor=cursor)
        due.context.log.info(what)
        return SensorResult(run_requests=planned, cursor=cursor)

    return reindex_sensor_of(
        spec,
        jobs,
        tick,
        "Watches the corpus, the embedder@production and requests; runs a sharded reindex.",
    )
