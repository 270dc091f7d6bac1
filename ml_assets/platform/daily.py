"""What every daily asset shares (the nightly's and each lineage's drift): the UTC calendar of
partitions, the bundle's asset name, and the alert a failed day posts."""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext, DailyPartitionsDefinition

from ml_assets.platform.alerts import send_alert

DAILY = DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")
BUNDLE = "serving_bundle"


def alert(context: AssetExecutionContext, event: str, reasons: list[str], **extra: Any) -> None:
    """POST the alert to ML_ALERT_WEBHOOK_URL when set; the run's failure is the other channel."""
    payload = {
        "event": event,
        "asset": context.asset_key.to_user_string(),
        "partition": context.partition_key,
        "run_id": context.run.run_id,
        "reasons": reasons,
        **extra,
    }
    send_alert(payload, context.log)
