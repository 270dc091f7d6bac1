"""reindex_sensor: a corpus change or a new production text-embedder triggers one reindex."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from ml_assets.core.corpus import default_corpus_path, load_corpus
from ml_assets.resources.mlflow import MlflowResource

REGISTERED_EMBEDDER = "text-embedder"
PRODUCTION_ALIAS = "production"

reindex_job = define_asset_job(
    "reindex_job",
    selection=AssetSelection.assets("search_corpus", "embedding_index", "search_quality_report"),
    description="Reload the corpus, update the pgvector index, re-run the quality report.",
)


@dataclass(frozen=True)
class IndexInputs:
    corpus_sha256: str
    model_sha256: str | None  # the production text-embedder's file, if one is promoted


def decide(cursor: str | None, current: IndexInputs) -> tuple[RunRequest | None, str]:
    """Pure decision: a run request when the inputs differ from the cursor's, and the new cursor."""
    state = {"corpus": current.corpus_sha256, "model": current.model_sha256}
    new_cursor = json.dumps(state, sort_keys=True)
    if cursor is not None and json.loads(cursor) == state:
        return None, new_cursor
    run_config: dict = {}
    if current.model_sha256:
        run_config = {
            "ops": {"embedding_index": {"config": {"model_sha256": current.model_sha256}}}
        }
    model = (current.model_sha256 or "upstream")[:12]
    request = RunRequest(
        run_key=f"corpus:{current.corpus_sha256[:12]}@model:{model}",
        run_config=run_config,
        tags={
            "ml-assets/corpus_sha256": current.corpus_sha256,
            "ml-assets/model_sha256": current.model_sha256 or "",
        },
    )
    return request, new_cursor


def corpus_source() -> Path:
    """The corpus the sensor watches: ML_CORPUS_PATH, or the one shipped in the repo."""
    configured = os.environ.get("ML_CORPUS_PATH")
    return Path(configured) if configured else default_corpus_path()


def production_embedder_sha(mlflow: MlflowResource) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow.client.get_model_version_by_alias(REGISTERED_EMBEDDER, PRODUCTION_ALIAS)
    except MlflowException:
        return None
    return version.tags.get("sha256")


@sensor(job=reindex_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING)
def reindex_sensor(context: SensorEvaluationContext, mlflow: MlflowResource) -> SensorResult:
    """Watches the corpus content hash and the text-embedder@production alias."""
    current = IndexInputs(
        corpus_sha256=load_corpus(corpus_source()).corpus_sha256,
        model_sha256=production_embedder_sha(mlflow),
    )
    request, cursor = decide(context.cursor, current)
    if request is None:
        return SensorResult(
            skip_reason=SkipReason("corpus and production embedder unchanged"), cursor=cursor
        )
    return SensorResult(run_requests=[request], cursor=cursor)


defs = Definitions(jobs=[reindex_job], sensors=[reindex_sensor])
