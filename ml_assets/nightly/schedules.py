"""The nightly schedules: each tick runs the daily partition of the UTC day that just ended.

Missed nights are backfilled from the UI (or `dagster job backfill`) over the same partitions;
the run key makes a re-evaluated tick idempotent.
"""

from datetime import UTC, datetime, timedelta

from dagster import (
    DefaultScheduleStatus,
    Definitions,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from ml_assets.nightly.defs import DAILY, nightly_smoke_job, nightly_validation_job


def night_for(scheduled: datetime) -> str | None:
    """The partition a tick at `scheduled` runs: the last complete UTC day before it."""
    day = (scheduled.astimezone(UTC) - timedelta(days=1)).date()
    return day.isoformat() if day >= DAILY.start.date() else None


def nightly_schedule(job: JobDefinition, cron: str, description: str) -> ScheduleDefinition:
    """`<job>_schedule`: at `cron` (UTC), a run of `job` over the night that just ended."""
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
        return RunRequest(run_key=f"{job_name}:{key}", partition_key=key)

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
