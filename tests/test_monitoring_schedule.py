"""`inference_monitoring_schedule`, evaluated as Dagster evaluates a tick: the UTC day that just
ended, with every declared lineage's inference drift and log retention, on by default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    build_schedule_context,
)

from ml_assets.platform.daily import DAILY
from tests.helpers import CATALOG, DEFS

SCHEDULE = DEFS.resolve_schedule_def("inference_monitoring_schedule")
REPOSITORY = DEFS.get_repository_def()
EXPECTED = {
    AssetKey([spec.name, stage])
    for spec in CATALOG.lineages
    for stage in ("inference_drift", "inference_log_retention")
}


def evaluate(tick: datetime) -> list:
    with DagsterInstance.ephemeral() as instance:
        # The code location's repository: the tick resolves the selection against its jobs.
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=REPOSITORY
        )
        data = SCHEDULE.evaluate_tick(context)
    return [*(data.run_requests or []), *(data.skip_message and [data.skip_message] or [])]


def test_a_tick_runs_yesterdays_drift_and_retention_of_every_lineage():
    assert {"fraud", "curves"} <= {k.path[0] for k in EXPECTED}
    (request,) = evaluate(datetime(2026, 12, 7, 1, tzinfo=UTC))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-12-06"
    assert request.run_key == "inference_monitoring_job:2026-12-06"
    assert set(request.asset_selection) == EXPECTED
    # The job the request runs holds exactly those assets, on the same daily partitions.
    job = DEFS.resolve_job_def("inference_monitoring_job")
    assert SCHEDULE.job_name == job.name
    assert job.asset_layer.executable_asset_keys == EXPECTED
    assert job.partitions_def == DAILY and DAILY.has_partition_key(request.partition_key)


def test_the_day_is_the_utc_one_and_the_schedule_is_on_by_default():
    assert SCHEDULE.cron_schedule == "0 1 * * *" and SCHEDULE.execution_timezone == "UTC"
    assert SCHEDULE.default_status == DefaultScheduleStatus.RUNNING
    # 01:00 in Tokyo is 16:00 UTC of the day before: the last complete UTC day is two back.
    tokyo = datetime(2026, 12, 7, 1, tzinfo=timezone(timedelta(hours=9)))
    (request,) = evaluate(tokyo)
    assert request.partition_key == "2026-12-05"


def test_before_the_first_complete_day_the_tick_skips():
    (skip,) = evaluate(datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert "no complete day" in skip
