"""What a person reads on `<lineage>/inference_drift`'s page: tonight's PSI per feature as bars
against the warn and fail lines, and the largest PSI of the last 14 nights.

The trend is read back from the asset's own materializations in the Dagster instance, the
newest of each partition that a run of this code location wrote (ml_assets/platform/evidence.py).
One thing the rule asks is left out: whether the run succeeded. A night whose blocking check
failed fails its run by design, and that night is what a trend must show.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import dagster as dg

from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.daily import DAILY
from ml_assets.platform.evidence import SUCCESS, step_of
from ml_assets.platform.inline_plots import inline_plot, inline_threshold_bars
from ml_assets.platform.lineage_spec import MonitoringSpec

NIGHTS = 14
FAILED_RUN = "FAILURE"  # a run whose blocking drift check failed, after it recorded the night
MAX_SCANNED = 1_000


def psi_by_feature(report: dict[str, Any]) -> dict[str, float]:
    """PSI of each compared feature (a sensitive one is not compared: only hashes are logged)."""
    return {n: d["psi"] for n, d in report.get("features", {}).items() if d["psi"] is not None}


def night_summary(report: dict[str, Any]) -> dict[str, Any]:
    """One night as the trend keeps it: its status, largest PSI and the feature that had it."""
    psis = psi_by_feature(report)
    worst = max(psis, key=lambda n: (psis[n], n)) if psis else None
    return {
        "status": report["status"],
        "max_psi": None if worst is None else psis[worst],
        "worst_feature": worst,
    }


def psi_bars(report: dict[str, Any], limits: MonitoringSpec) -> str | None:
    """Markdown: tonight's PSI per feature with the warn and fail lines (None: none compared)."""
    psis = psi_by_feature(report)
    if not psis:
        return None
    lines = {"psi_warn": limits.psi_warn, "psi_fail": limits.psi_fail}
    return inline_threshold_bars("PSI per feature", psis, lines, "PSI")


def window(day: str) -> list[str]:
    """The partitions of the NIGHTS nights that end with `day` (none before the first)."""
    end = date.fromisoformat(day)
    days = [(end - timedelta(days=i)).isoformat() for i in range(NIGHTS - 1, -1, -1)]
    return [d for d in days if d >= DAILY.start.date().isoformat()]


def earlier_nights(context: dg.AssetExecutionContext, day: str) -> dict[str, dict[str, Any]]:
    """partition -> night summary, for the nights before `day` in its window that this code
    location's runs recorded (the newest record of each partition)."""
    asset = context.asset_key.to_user_string()
    records = DagsterRecords.of(context)
    wanted = set(window(day)[:-1])
    found: dict[str, dict[str, Any]] = {}
    cursor, scanned = None, 0
    while wanted - set(found) and scanned < MAX_SCANNED:
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=sorted(wanted)),
            limit=200,
            cursor=cursor,
        )
        for record in result.records:  # newest first
            scanned += 1
            partition, mat = record.partition_key, record.asset_materialization
            if partition in found or partition not in wanted or mat is None:
                continue
            origin = records.origin(record.run_id, record.event_log_entry.step_key)
            if origin.status == FAILED_RUN:
                origin = replace(origin, status=SUCCESS)
            if records.rule.judge(asset, (step_of(asset),), origin) is not None:
                continue
            summary = mat.metadata.get("night")
            if summary is not None:
                found[partition] = summary.value
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def trend(
    day: str, tonight: dict[str, Any], earlier: dict[str, dict[str, Any]], limits: MonitoringSpec
) -> tuple[str | None, dict[str, Any]]:
    """Markdown of the window's largest PSI per night against the lines (None: under two
    nights judged), and the nights themselves by partition."""
    nights = {**earlier, day: tonight}
    days = window(day)
    points = [
        (i, nights[d]["max_psi"])
        for i, d in enumerate(days)
        if d in nights and nights[d].get("max_psi") is not None
    ]
    table = {d: nights[d] for d in days if d in nights}
    if len(points) < 2:
        return None, table
    xs, ys = zip(*points, strict=True)
    span = [0, len(days) - 1]
    series = {
        "largest PSI": (xs, ys),
        "psi_fail": (span, [limits.psi_fail] * 2),
        "psi_warn": (span, [limits.psi_warn] * 2),
    }
    label = f"night ({len(points)} of {len(days)} judged, {days[0]} to {days[-1]})"
    return inline_plot(f"PSI, {len(days)} nights", series, label, "PSI"), table
