"""One line per finished asset while a job runs: name, seconds, sha256 prefix, check verdicts.

`ml-assets up` sends Dagster's event stream to a log file and prints these lines instead. They
come from the instance's event log (the records the UI shows), read by run id as the run goes.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from ml_assets.local.job_runner import RUN_TAG

FOLLOWED = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
}


@dataclass
class _Step:
    started: float | None = None
    assets: list[tuple[str, str]] = field(default_factory=list)  # (asset, data version)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # (asset, check, passed)


def step_line(key: str, step: _Step, ended: float, ok: bool, partition: str | None = None) -> str:
    seconds = f"{ended - step.started:6.1f} s" if step.started is not None else "     ? s"
    # A step of its own for a check (an @asset_check) is named after what it checks.
    names = (
        ", ".join(a for a, _ in step.assets)
        or ", ".join(f"{a}:{c}" for a, c, _ in step.checks)
        or key
    )
    if partition:
        names = f"{names}[{partition}]"
    hashes = " ".join(f"sha256 {v[:12]}" for _, v in step.assets if v)
    verdicts = ", ".join(f"{c} {'passed' if p else 'FAILED'}" for _, c, p in step.checks)
    parts = [f"{'ok  ' if ok else 'FAIL'} {names:<34} {seconds}", hashes, verdicts]
    return "  ".join(p for p in parts if p)


class RunFollower:
    """Reads a run's events from the instance and reports each step as it ends."""

    def __init__(
        self,
        instance: DagsterInstance,
        job: str,
        after: datetime | None,
        say: Callable,
        run_id: str | None = None,
        partition: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Follows the first run of `job` created after `after` (with `tags`, when given), or
        the run `run_id`."""
        self.instance, self.job, self.after, self.say = instance, job, after, say
        self.run_id, self.partition, self.tags = run_id, partition, tags
        self.cursor: str | None = None
        self.steps: dict[str, _Step] = {}
        self.reported = 0

    def _find_run(self) -> None:
        records = self.instance.get_run_records(
            RunsFilter(job_name=self.job, created_after=self.after, tags=self.tags or {}),
            limit=1,
        )
        if records:
            self.run_id = records[0].dagster_run.run_id

    def poll(self) -> None:
        if self.run_id is None:
            self._find_run()
            if self.run_id is None:
                return
        conn = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=FOLLOWED)
        self.cursor = conn.cursor
        for record in conn.records:
            self._event(record.event_log_entry)

    def _event(self, entry) -> None:
        event = entry.dagster_event
        key = entry.step_key or event.step_key or "?"
        step = self.steps.setdefault(key, _Step())
        kind = event.event_type
        if kind == DagsterEventType.STEP_START:
            step.started = entry.timestamp
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.step_materialization_data.materialization
            version = mat.tags.get("dagster/data_version", "") if mat.tags else ""
            step.assets.append((mat.asset_key.to_user_string(), version))
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            step.checks.append(
                (
                    evaluation.asset_key.to_user_string(),
                    evaluation.check_name,
                    bool(evaluation.passed),
                )
            )
        else:
            ok = kind == DagsterEventType.STEP_SUCCESS
            self.say(step_line(key, step, entry.timestamp, ok, self.partition))
            self.reported += 1


def run_with_progress(
    jobs: Sequence[str],
    *,
    instance: DagsterInstance,
    log_path,
    say: Callable[[str], None],
    announce: Callable[[str], None] = lambda job: None,
    config: Path | None = None,
    poll_s: float = 1.0,
    **popen: object,
) -> dict[str, bool]:
    """Run `jobs` one after the other in one process (ml_assets.local.job_runner; `config` is
    the first one's run config), with its output in `log_path`; `announce(job)` when a job's run
    starts, then one line per step as it ends. Returns whether each job's run succeeded (False:
    failed or never ran). Only the runner's own runs are followed, by a tag: a sensor may run
    the same job meanwhile."""
    started_by = f"ml-assets-up-{uuid.uuid4().hex[:12]}"
    command = [sys.executable, "-m", "ml_assets.local.job_runner", "--started-by", started_by]
    if config:
        command += ["--config", str(config), "--config-job", jobs[0]]
    command += list(jobs)
    after = datetime.now().astimezone()
    tags = {RUN_TAG: started_by}
    followers = [RunFollower(instance, job, after, say, tags=tags) for job in jobs]

    def poll() -> None:
        # In job order: a run's last steps are reported before the next run's first.
        for follower in followers:
            found = follower.run_id is not None
            follower.poll()
            if not found and follower.run_id is not None:
                announce(follower.job)

    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            while proc.poll() is None:
                time.sleep(poll_s)
                poll()
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        poll()
    outcome = {}
    for follower in followers:
        run = instance.get_run_by_id(follower.run_id) if follower.run_id else None
        outcome[follower.job] = run is not None and run.status == DagsterRunStatus.SUCCESS
    return outcome
