"""Helpers for reading what a run materialized back out of the Dagster instance."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult

from ml_assets.assets.data import raw_transactions, raw_transactions_expectations, training_splits
from ml_assets.assets.export import fraud_model_onnx
from ml_assets.assets.training import fraud_model
from ml_assets.assets.validation import export_validation_report

# The fraud lineage's asset definitions (with the expectations check), in materialization order.
FRAUD_ASSETS = [
    raw_transactions,
    raw_transactions_expectations,
    training_splits,
    fraud_model,
    fraud_model_onnx,
    export_validation_report,
]
LINEAGE = (
    "raw_transactions",
    "training_splits",
    "fraud_model",
    "fraud_model_onnx",
    "export_validation_report",
)


def run_config(rows: int, seed: int = 7, source_path: str | None = None, **ops: Any) -> dict:
    raw: dict[str, Any] = {"rows": rows, "seed": seed}
    if source_path:
        raw["source_path"] = source_path
    return {"ops": {"raw_transactions": {"config": raw}, **ops}}


def data_versions(result: ExecuteInProcessResult) -> dict[str, str]:
    out = {}
    for mat in result.get_asset_materialization_events():
        m = mat.materialization
        out[m.asset_key.to_user_string()] = m.tags["dagster/data_version"]
    return out


def latest_metadata(instance: DagsterInstance, asset: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def latest_storage_id(instance: DagsterInstance, asset: str) -> int | None:
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0].storage_id if records else None


def failure_text(result: ExecuteInProcessResult) -> str:
    """Every message in the first failed step's error chain (Dagster wraps user errors)."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def assets_of_lineage(defs: Any, name: str) -> list[Any]:
    """The assets and checks of one declared lineage (keys `<name>/...`), for `materialize`."""
    items = [*(defs.assets or []), *(defs.asset_checks or [])]
    return [
        a
        for a in items
        if all(
            k.path[0] == name
            for k in (list(getattr(a, "keys", [])) or [c.asset_key for c in a.check_specs])
        )
    ]
