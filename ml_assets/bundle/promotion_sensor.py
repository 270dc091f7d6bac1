"""model_promotion_sensor: the `production` alias of a model moved, or a check the bundle
needs passed after it was built → one serving run.

The alias can move through our promote job, the MLflow UI or any MLflow client; the sensor
reads the registry for that. The checks (a search report over the production embedder, a
production version's validation) come from the platform's records (bundle/bundle_follow.py).
The cursor holds the versions and evidence it has acted on, so a daemon restart neither
re-triggers a run nor misses a move (the cursor is stored by Dagster, not in memory).
"""

import json

from dagster import (
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ml_assets.bundle import bundle_follow
from ml_assets.bundle.assets import serving_job
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.promotion import champion_version
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from ml_assets.platform.validation_records import search_evidence
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore


def production_aliases(mlflow: MlflowResource, catalog: Catalog) -> dict[str, str | None]:
    """{registered model: version the `production` alias points at, or None}, for the
    embedder and every declared lineage's registered model."""
    return {name: champion_version(mlflow.client, name) for name in catalog.registered_models()}


def decide(
    cursor: str | None, current: dict[str, str | None], needs: frozenset[str]
) -> tuple[list[RunRequest], str, str | None]:
    """Pure decision: (run requests, new cursor, skip reason).

    `needs`: the models a bundle cannot be built without (`Catalog.bundle_needs`).

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
    new_cursor = json.dumps({**state, "aliases": current, "moves": moves}, sort_keys=True)
    if not moved:
        return [], new_cursor, "no production alias moved"
    # The bundle needs the embedder and the /v1/score model; any other lineage is served
    # once it has a production version.
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


def decide_all(
    cursor: str | None,
    current: dict[str, str | None],
    bundle: bundle_follow.Bundled | None,
    validated: dict[str, str | None],
    search: str | None,
    needs: frozenset[str],
) -> tuple[list[RunRequest], str, str | None]:
    """Pure decision: alias moves first (their build sees the evidence there is now, which the
    cursor remembers); else a check that passed since (bundle_follow.follow)."""
    requests, new_cursor, skip = decide(cursor, current, needs)
    if requests:
        return requests, bundle_follow.remember(new_cursor, current, validated, search), None
    if skip and skip != "no production alias moved":
        return [], new_cursor, skip
    return bundle_follow.follow(new_cursor, current, bundle, validated, search)


def observe(
    mlflow: MlflowResource, records: DagsterRecords, base_dir: str, catalog: Catalog
) -> tuple[dict[str, str | None], bundle_follow.Bundled | None, dict[str, str | None], str | None]:
    """(production versions, the latest bundle, the validation keys of the production versions
    it lacks, the key of the passing search report for the embedder it would serve)."""
    current = production_aliases(mlflow, catalog)
    bundle = bundle_follow.bundled(base_dir)
    validated, tags = {}, {}
    for name, version in current.items():
        if version and (bundle is None or bundle.versions.get(name) != version):
            tags[name] = dict(mlflow.client.get_model_version(name, version).tags)
            spec = catalog.by_model(name)
            validated[name] = bundle_follow.validation_key(records, spec, name, version, tags[name])
    embedder = catalog.embedder_model()
    if bundle is not None and bundle.versions.get(embedder) == current.get(embedder):
        sha = bundle.embedder_sha256
    else:
        sha = tags.get(embedder, {}).get("sha256")
    search = bundle_follow.search_key(search_evidence(records, sha)) if sha else None
    return current, bundle, validated, search


def promotion_sensor(catalog: Catalog) -> SensorDefinition:
    """model_promotion_sensor over the catalog's registered models."""
    needs = catalog.bundle_needs()

    @sensor(
        name="model_promotion_sensor",
        job=serving_job,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Bundles and smoke-tests the production models whenever an alias moves, or "
        "a check the bundle needs passes after it was built.",
    )
    def model_promotion_sensor(
        context: SensorEvaluationContext, mlflow: MlflowResource, store: ArtifactStore
    ) -> SensorResult:
        records = DagsterRecords.of(context)
        seen = observe(mlflow, records, store.base_dir, catalog)
        requests, cursor, skip = decide_all(context.cursor, *seen, needs)
        if not requests:
            return SensorResult(skip_reason=SkipReason(skip), cursor=cursor)
        return SensorResult(run_requests=requests, cursor=cursor)

    return model_promotion_sensor


def build_defs(catalog: Catalog) -> Definitions:
    return Definitions(sensors=[promotion_sensor(catalog)])
