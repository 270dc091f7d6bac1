"""The platform's validation records, read from the Dagster instance: materializations by data
version (sha256) and the asset check evaluations that targeted exactly them.

Every record passes through the evidence rule (ml_assets/platform/evidence.py) first: a record a run
of this code location did not write (runless reports, other code locations, other jobs, other
steps) is never yielded, only counted with its reason. This is the proof the promotion gate
trusts (ml_assets/platform/validation_records.py); nothing here reads a registry tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dagster import AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster_shared.check import CheckError

from ml_assets.platform.evidence import (
    IN_PROCESS,
    EvidenceRule,
    Ignored,
    Origin,
    check_steps,
    step_of,
)
from ml_assets.platform.validation_records import Materialization, Verdict

DATA_VERSION_TAG = "dagster/data_version"
_DONE = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}


def rule_of(repository: Any) -> EvidenceRule:
    """The rule for a loaded code location: its declared jobs and what each of them runs.

    A repository with no declared job (an in-process `materialize`'s ephemeral one) knows no
    jobs, so the rule then checks everything but job membership."""
    jobs: dict[str, frozenset[str]] = {}
    for job in repository.get_all_jobs():
        if job.name.startswith("__"):
            continue
        keys: set[str] = set()
        for data in job.asset_layer.data:
            keys.update(k.to_user_string() for k in data.assets_def.keys)
            keys.update(
                f"{k.asset_key.to_user_string()}:{k.name}" for k in data.assets_def.check_keys
            )
        jobs[job.name] = frozenset(keys)
    return EvidenceRule(jobs=jobs or None)


def _location(run: Any) -> str:
    remote = getattr(run, "remote_job_origin", None)
    if remote is not None:
        return remote.location_name
    code = getattr(run, "job_code_origin", None)
    if code is not None:
        pointer = code.repository_origin.code_pointer
        return getattr(pointer, "module", None) or getattr(pointer, "python_file", "") or "?"
    return IN_PROCESS


class DagsterRecords:
    """ValidationRecords over one Dagster instance (pages through its event log, bounded)."""

    def __init__(
        self,
        instance: DagsterInstance,
        rule: EvidenceRule | None = None,
        page: int = 200,
        max_records: int = 10_000,
    ):
        self.instance, self.page, self.max_records = instance, page, max_records
        self.rule = rule or EvidenceRule()
        self.ignored = Ignored()
        self._cache: dict[str, list[Materialization]] = {}
        self._runs: dict[str, Origin] = {}

    @classmethod
    def of(cls, context: Any) -> DagsterRecords:
        """The records as a run of this code location reads them (its own job list).

        An in-process `materialize([...])` or a bare sensor context has no repository: the rule
        then judges every record but its job's membership (ml_assets/platform/evidence.py)."""
        try:
            repository = context.repository_def
        except CheckError:
            repository = None
        if repository is None:
            return cls(context.instance)
        return cls(context.instance, rule_of(repository))

    def origin(self, run_id: str, step: str | None) -> Origin:
        if not run_id:
            return Origin(run_id="", step=step)
        if run_id not in self._runs:
            run = self.instance.get_run_by_id(run_id)
            self._runs[run_id] = (
                Origin(run_id=run_id)
                if run is None
                else Origin(
                    run_id=run_id,
                    job=run.job_name,
                    status=run.status.value,
                    location=_location(run),
                )
            )
        base = self._runs[run_id]
        return Origin(base.run_id, step, base.job, base.status, base.location)

    def materializations(self, asset: str) -> Iterator[Materialization]:
        if asset in self._cache:
            yield from self._cache[asset]
            return
        seen: list[Materialization] = []
        cursor = None
        scanned = 0
        while scanned < self.max_records:
            result = self.instance.fetch_materializations(
                AssetKey.from_user_string(asset), limit=self.page, cursor=cursor
            )
            for record in result.records:
                scanned += 1
                mat = record.asset_materialization
                if mat is None:
                    continue
                origin = self.origin(record.run_id, record.event_log_entry.step_key)
                problem = self.rule.judge(asset, (step_of(asset),), origin)
                if problem is not None:
                    self.ignored.add(asset, problem, record.storage_id)
                    continue
                item = Materialization(
                    asset=asset,
                    storage_id=record.storage_id,
                    run_id=record.run_id,
                    timestamp=record.timestamp,
                    data_version=mat.tags.get(DATA_VERSION_TAG) if mat.tags else None,
                    metadata={k: v.value for k, v in mat.metadata.items()},
                    origin=origin.to_dict(),
                )
                seen.append(item)
                yield item
            if not result.has_more:
                break
            cursor = result.cursor
        self._cache[asset] = seen

    def verdict(self, mat: Materialization, check: str) -> Verdict:
        """The newest evaluation of `check` that targeted `mat` and that the rule admits."""
        key = AssetCheckKey(AssetKey.from_user_string(mat.asset), check)
        subject = f"{mat.asset}:{check}"
        cursor = None
        scanned = 0
        while scanned < self.max_records:
            history = self.instance.event_log_storage.get_asset_check_execution_history(
                key, limit=self.page, cursor=cursor, status=_DONE
            )
            for record in history:
                evaluation = record.evaluation
                target = evaluation.target_materialization_data if evaluation else None
                if target is None or target.storage_id != mat.storage_id:
                    continue
                step = record.event.step_key if record.event else None
                origin = self.origin(record.run_id, step)
                problem = self.rule.judge(subject, check_steps(mat.asset, check), origin)
                if problem is not None:
                    self.ignored.add(subject, problem, record.id)
                    continue
                return Verdict(
                    asset=mat.asset,
                    check=check,
                    data_version=mat.data_version,
                    passed=bool(evaluation.passed),
                    run_id=record.run_id,
                    evaluation_id=record.id,
                    evaluated_at=record.create_timestamp,
                    target_storage_id=target.storage_id,
                    origin=origin.to_dict(),
                    metadata={k: v.value for k, v in (evaluation.metadata or {}).items()},
                )
            scanned += len(history)
            if len(history) < self.page:
                break
            cursor = history[-1].id
        return Verdict(asset=mat.asset, check=check, data_version=mat.data_version, passed=None)
