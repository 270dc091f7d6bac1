"""The platform's validation records, read from the Dagster instance: materializations by data
version (sha256) and the asset check evaluations that targeted exactly them.

This is the proof the promotion gate trusts (ml_assets/core/validation_records.py); nothing here
reads a registry tag.
"""

from __future__ import annotations

from collections.abc import Iterator

from dagster import AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ml_assets.core.validation_records import Materialization, Verdict

DATA_VERSION_TAG = "dagster/data_version"
_DONE = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}


class DagsterRecords:
    """ValidationRecords over one Dagster instance (pages through its event log, bounded)."""

    def __init__(self, instance: DagsterInstance, page: int = 200, max_records: int = 10_000):
        self.instance, self.page, self.max_records = instance, page, max_records
        self._cache: dict[str, list[Materialization]] = {}

    def materializations(self, asset: str) -> Iterator[Materialization]:
        if asset in self._cache:
            yield from self._cache[asset]
            return
        seen: list[Materialization] = []
        cursor = None
        while len(seen) < self.max_records:
            result = self.instance.fetch_materializations(
                AssetKey.from_user_string(asset), limit=self.page, cursor=cursor
            )
            for record in result.records:
                mat = record.asset_materialization
                if mat is None:
                    continue
                item = Materialization(
                    asset=asset,
                    storage_id=record.storage_id,
                    run_id=record.run_id,
                    timestamp=record.timestamp,
                    data_version=mat.tags.get(DATA_VERSION_TAG) if mat.tags else None,
                    metadata={k: v.value for k, v in mat.metadata.items()},
                )
                seen.append(item)
                yield item
            if not result.has_more:
                break
            cursor = result.cursor
        self._cache[asset] = seen

    def verdict(self, mat: Materialization, check: str) -> Verdict:
        key = AssetCheckKey(AssetKey.from_user_string(mat.asset), check)
        cursor = None
        scanned = 0
        while scanned < self.max_records:
            history = self.instance.event_log_storage.get_asset_check_execution_history(
                key, limit=self.page, cursor=cursor, status=_DONE
            )
            for record in history:
                evaluation = record.evaluation
                target = evaluation.target_materialization_data if evaluation else None
                if target is not None and target.storage_id == mat.storage_id:
                    return Verdict(
                        asset=mat.asset,
                        check=check,
                        data_version=mat.data_version,
                        passed=bool(evaluation.passed),
                        run_id=record.run_id,
                        evaluation_id=record.id,
                        evaluated_at=record.create_timestamp,
                        target_storage_id=target.storage_id,
                        metadata={k: v.value for k, v in (evaluation.metadata or {}).items()},
                    )
            scanned += len(history)
            if len(history) < self.page:
                break
            cursor = history[-1].id
        return Verdict(asset=mat.asset, check=check, data_version=mat.data_version, passed=None)
