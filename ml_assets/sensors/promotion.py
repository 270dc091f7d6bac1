"""model_promotion_sensor: the `production` alias of either model moved → one serving run.

The alias can move through our promote job, the MLflow UI or any MLflow client; the sensor only
reads the registry. The cursor holds the versions it has acted on, so a daemon restart neither
re-triggers a run nor misses a move (the cursor is stored by Dagster, not in memory).
"""

import json

from dagster import (
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ml_assets.assets.serving import serving_job
from ml_assets.core import lineage_spec, search_spec
from ml_assets.core.promotion import champion_version
from ml_assets.core.serving_bundle import PRODUCTION_ALIAS
from ml_assets.resources.mlflow import MlflowResource


def bundle_needs() -> frozenset[str]:
    """The models a bundle cannot be built without: the embedder and the lineage behind
    /v1/score."""
    scorer = lineage_spec.score_lineage()
    embedder = search_spec.embedder_model()
    return frozenset({embedder, *([scorer.registered_model] if scorer else [])})


def watched_models() -> list[str]:
    """The embedder and every declared lineage's registered model."""
    declared = (s.registered_model for s in lineage_spec.declared())
    return sorted({search_spec.embedder_model(), *declared})


def production_aliases(mlflow: MlflowResource) -> dict[str, str | None]:
    """{registered model: version the `production` alias points at, or None}."""
    return {name: champion_version(mlflow.client, name) for name in watched_models()}


def decide(
    cursor: str | None, current: dict[str, str | None]
) -> tuple[list[RunRequest], str, str | None]:
    """Pure decision: (run requests, new cursor, skip reason).

    The cursor holds the alias targets last seen and how often each `name@version` became
    production, so promoting v2, rolling back to v1 and promoting v2 again runs again
    (run keys `name@2`, `name@1`, `name@2#2`) instead of being deduplicated by Dagster.
    """
    state = json.loads(cursor) if cursor else {}
    seen: dict[str, str | None] = state.get("aliases", {})
    moves: dict[str, int] = dict(state.get("moves", {}))
    moved = [name for name, version in current.items() if version and seen.get(name) != version]
    for name in moved:
        key = f"{name}@{current[name]}"
        moves[key] = moves.get(key, 0) + 1
    new_cursor = json.dumps({"aliases": current, "moves": moves}, sort_keys=True)
    if not moved:
        return [], new_cursor, "no production alias moved"
    # The bundle needs the embedder and the /v1/score model; any other lineage is served
    # once it has a production version.
    needs = bundle_needs()
    missing = [name for name, version in current.items() if version is None and name in needs]
    if missing:
        # A bundle needs both models; the move is remembered and the bundle follows the other
        # model's first promotion (which is itself a move).
        reason = (
            f"{', '.join(moved)} moved, but {', '.join(missing)} has no "
            f"'{PRODUCTION_ALIAS}' version yet to bundle with it"
        )
        return [], new_cursor, reason
    requests = []
    for name in moved:
        key = f"{name}@{current[name]}"
        requests.append(
            RunRequest(
                run_key=key if moves[key] == 1 else f"{key}#{moves[key]}",
                tags={
                    "ml-assets/promoted_model": name,
                    "ml-assets/promoted_version": str(current[name]),
                    "ml-assets/previous_version": str(seen.get(name)),
                },
            )
        )
    return requests, new_cursor, None


@sensor(
    job=serving_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Bundles and smoke-tests the production models whenever an alias moves.",
)
def model_promotion_sensor(
    context: SensorEvaluationContext, mlflow: MlflowResource
) -> SensorResult:
    requests, cursor, skip = decide(context.cursor, production_aliases(mlflow))
    if not requests:
        return SensorResult(skip_reason=SkipReason(skip), cursor=cursor)
    return SensorResult(run_requests=requests, cursor=cursor)


defs = Definitions(sensors=[model_promotion_sensor])
