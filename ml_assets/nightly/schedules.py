"""The nightly schedules: each tick runs the daily partition of the UTC day that just ended.

The validation and the smoke run; and, per declared lineage, its inference drift and the
inference log's retention (`inference_monitoring_schedule`, one run for every lineage).
Missed nights are backfilled from the UI (or `dagster job backfill`) over the same partitions;
the run key makes a re-evaluated tick idempotent.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from ml_assets.monitoring import drift_asset, retention_asset
from ml_assets.nightly.defs import DAILY, nightly_smoke_job, nightly_validation_job
from ml_assets.platform.catalog import Catalog


def night_for(scheduled: datetime) -> str | None:
    """The partition a tick at `scheduled` runs: the last complete UTC day before it."""
    day = (scheduled.astimezone(UTC) - timedelta(days=1)).date()
    return day.isoformat() if day >= DAILY.start.date() else None


def nightly_schedule(
    job: JobDefinition | UnresolvedAssetJobDefinition,
    cron: str,
    description: str,
    assets: Sequence[AssetKey] = (),
) -> ScheduleDefinition:
    """`<job>_schedule`: at `cron` (UTC), a run of `job` over the night that just ended (of
    `assets` only, when given)."""
    job_name = job.name

    @schedule(
        name=f"{job_name.removesuffix('_job')}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def _night(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        key = night_for(context.scheduled_execution_time)
        if key is None:
            return SkipReason("no complete day since the partitions' start date")
        return RunRequest(
            run_key=f"{job_name}:{key}", partition_key=key, asset_selection=list(assets) or None
        )

    return _night


nightly_validation_schedule = nightly_schedule(
    nightly_validation_job,
    "0 2 * * *",
    "02:00 UTC: expectations, export parity and search quality on production.",
)
# An hour after the validation, so the load run does not share two cores with it.
nightly_smoke_schedule = nightly_schedule(
    nightly_smoke_job,
    "0 3 * * *",
    "03:00 UTC: the production Bento under the nightly load profile.",
)

defs = Definitions(schedules=[nightly_validation_schedule, nightly_smoke_schedule])


def monitoring_assets(catalog: Catalog) -> list[AssetKey]:
    """Each declared lineage's daily inference drift and log retention, by lineage."""
    stages = (drift_asset.STAGE, retention_asset.STAGE)
    return [AssetKey([spec.name, stage]) for spec in catalog.lineages for stage in stages]


def monitoring_defs(catalog: Catalog) -> Definitions:
    """`inference_monitoring_job` and its schedule: yesterday's drift and retention of every
    declared lineage, in one run (nothing when no lineage is declared)."""
    keys = monitoring_assets(catalog)
    if not keys:
        return Definitions()
    job = define_asset_job(
        "inference_monitoring_job",
        selection=AssetSelection.assets(*keys),
        description="Each lineage's inference drift and inference log retention, for one day.",
    )
    # 01:00, before the validation at 02:00: the day's log is complete, and two cores are free.
    tick = nightly_schedule(
        job,
        "0 1 * * *",
        "01:00 UTC: every lineage's drift against its training split, and its log cut to "
        "retention_days.",
        keys,
    )
    return Definitions(jobs=[job], schedules=[tick])
