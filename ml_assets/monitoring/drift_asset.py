"""`<lineage>/inference_drift`: one day's logged traffic of the production version against the
training split that version learnt from, as a daily-partitioned asset with a blocking check.

The training split is found as the nightly finds it (ml_assets/nightly/lineage.py):
the production version is gated on the platform's records (the evidence rule), the validated
report that gate found names the splits' sha256, and the splits are read back from the content
store by it. Never the latest materialization of the splits.
"""

# No `from __future__ import annotations`: Dagster reads the nested asset function's
# `context` annotation at definition time, and a string there is refused.
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
from dagster import AssetExecutionContext

from ml_assets.monitoring.drift import NOT_ENOUGH_TRAFFIC, drift_report
from ml_assets.monitoring.drift_pages import (
    earlier_nights,
    night_summary,
    psi_bars,
    psi_by_feature,
    trend,
)
from ml_assets.monitoring.inference_tables import ensure_tables, read_day
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.daily import BUNDLE, DAILY, alert
from ml_assets.platform.hashing import canonical_json, read_parquet_bytes, sha256_bytes
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.provenance import hashed_output, timed
from ml_assets.platform.serving_gate import gate_production, production_or_none
from ml_assets.platform.validation_records import chain_of
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.tabular import model
from ml_assets.tabular.scorer import OnnxTabularScorer

STAGE = "inference_drift"
NOT_SERVED = "not served"
CHECK = "psi_within_fail"
CODE_VERSION = "inference-drift-2"


def training_reference(
    spec: LineageSpec, files: dict[str, bytes], facts: dict[str, Any], store: ArtifactStore
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The train rows of the splits the validated report judged, and the hashes that name them."""
    chain = chain_of(spec)
    report_sha = facts.get("report_sha256")
    if not report_sha or "model.onnx" not in files:
        raise dg.Failure(
            f"{spec.registered_model}'s production version has no validated lineage in this "
            "platform's records: materialize and validate it before judging its drift"
        )
    content = store.content()
    report = json.loads(content.ref_for(chain.report, report_sha, ".json").read_verified())
    splits_sha = report["inputs"][spec.asset("splits")]
    df = read_parquet_bytes(
        content.ref_for(spec.asset("splits"), splits_sha, ".parquet").read_verified()
    )
    hashes = {
        "onnx_sha256": sha256_bytes(files["model.onnx"]),
        "model_sha256": report["inputs"][spec.asset("model")],
        "splits_sha256": splits_sha,
        "report_sha256": report_sha,
    }
    return df[df["split"] == "train"].reset_index(drop=True), hashes


def live_day(dsn: str, spec: LineageSpec, day: str, onnx_sha256: str) -> pd.DataFrame:
    """The day's logged rows answered by exactly these ONNX bytes (features, output, label)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_tables(conn, spec.name)
        rows = read_day(conn, spec.name, start, start + timedelta(days=1))
    kept = [(f, out, label) for f, out, label, sha in rows if sha == onnx_sha256]
    frame = pd.DataFrame([f for f, _, _ in kept], columns=[f.name for f in spec.features])
    frame["__output__"] = [out for _, out, _ in kept]
    frame["__label__"] = [label for _, _, label in kept]
    return frame


def live_metric(spec: LineageSpec, live: pd.DataFrame) -> dict[str, Any]:
    labelled = live[live["__label__"].notna()]
    y = labelled["__label__"].to_numpy(dtype=float)
    if len(labelled) == 0 or (spec.task == "classification" and len(np.unique(y)) < 2):
        return {"labelled_rows": int(len(labelled)), "value": None}
    metrics = model.evaluate(spec.task, y, labelled["__output__"].to_numpy(dtype=float))
    return {"labelled_rows": int(len(labelled)), "value": metrics.get(spec.primary_metric)}


def page_of(
    context: AssetExecutionContext, spec: LineageSpec, day: str, report: dict[str, Any]
) -> dict[str, Any]:
    """The night's plots (tonight's PSI bars, the 14-night trend) and what the next nights'
    trend reads back from this materialization (`night`)."""
    night = night_summary(report)
    trend_md, nights = trend(day, night, earlier_nights(context, day), spec.monitoring)
    bars = psi_bars(report, spec.monitoring)
    out: dict[str, Any] = {}
    if bars is not None:
        out["psi_plot"] = dg.MetadataValue.md(bars)
    if trend_md is not None:
        out["psi_trend_plot"] = dg.MetadataValue.md(trend_md)
    return {
        **out,
        "night": dg.MetadataValue.json(night),
        "psi": dg.MetadataValue.json(psi_by_feature(report)),
        "psi_trend": dg.MetadataValue.json(nights),
    }


def not_served(
    store: ArtifactStore, spec: LineageSpec, day: str
) -> Iterator[dg.Output[Any] | dg.AssetCheckResult]:
    """A lineage never promoted serves no traffic: the night is recorded as not served, and its
    check warns (it does not fail the scheduled run of every lineage's drift)."""
    record = {"partition": day, "status": NOT_SERVED, "registered_model": spec.registered_model}
    ref = store.content().put(
        spec.asset(STAGE), canonical_json(record), ".json", code_version=CODE_VERSION
    )
    description = (
        f"{spec.registered_model} has no production version: nothing is served, so there is "
        f"no traffic to judge (promote a version: `ml-assets promote {spec.registered_model} "
        "VERSION --reason ...`)"
    )
    yield hashed_output(
        ref,
        metadata={
            "verdict": dg.MetadataValue.text(f"{day}: {description}"),
            "status": NOT_SERVED,
        },
    )
    yield dg.AssetCheckResult(
        check_name=CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
    )


def drift_asset(spec: LineageSpec) -> dg.AssetsDefinition:
    """The lineage's daily drift asset and its blocking check."""
    key = dg.AssetKey([spec.name, STAGE])

    @dg.asset(
        key=key,
        group_name=spec.name,
        partitions_def=DAILY,
        code_version=CODE_VERSION,
        deps=[dg.AssetKey(BUNDLE)],
        check_specs=[dg.AssetCheckSpec(CHECK, asset=key, blocking=True)],
    )
    def inference_drift(
        context: AssetExecutionContext,
        store: ArtifactStore,
        mlflow: MlflowResource,
        postgres: PostgresResource,
    ) -> Iterator[dg.Output[Any] | dg.AssetCheckResult]:
        """The day's logged inputs against the production version's own training split."""
        day = context.partition_key
        if production_or_none(mlflow.client, spec.registered_model) is None:
            yield from not_served(store, spec, day)
            return
        with timed() as t, tempfile.TemporaryDirectory() as tmp:
            roles = [(spec.name, spec.registered_model)]
            # The gate judges this lineage's own production version: a catalog of it alone.
            _, mv, files, decision = gate_production(
                mlflow.client, DagsterRecords.of(context), Path(tmp), roles, Catalog((spec,))
            )[0]
            train, hashes = training_reference(spec, files, decision.evidence.facts, store)
            live = live_day(postgres.dsn, spec, day, hashes["onnx_sha256"])
            names = [f.name for f in spec.features]
            scorer = OnnxTabularScorer(files["model.onnx"], spec.features, spec.task)
            train_out = scorer.predict_columns({n: train[n].to_numpy() for n in names})
            report = drift_report(
                spec.features,
                train,
                live[names],
                live["__output__"].to_numpy(dtype=float),
                spec.monitoring,
                np.asarray(train_out, dtype=float),
            )
            record = {
                "partition": day,
                "version": f"{mv.name}@{mv.version}",
                **hashes,
                **report,
                "live_metric": {
                    "metric": spec.primary_metric,
                    "validated": decision.evidence.metric,
                    **live_metric(spec, live),
                },
            }
            ref = store.content().put(
                spec.asset(STAGE), canonical_json(record), ".json", code_version=CODE_VERSION
            )
        status = report["status"]
        if status == NOT_ENOUGH_TRAFFIC:
            description = (
                f"not enough traffic: {report['rows']} logged rows on {day}, "
                f"min_rows {spec.monitoring.min_rows}"
            )
        elif report["failed"]:
            description = f"PSI above {spec.monitoring.psi_fail}: {', '.join(report['failed'])}"
        else:
            description = f"every feature's PSI within {spec.monitoring.psi_fail}"
        yield hashed_output(
            ref,
            wall_time_s=t["seconds"],
            metadata={
                "verdict": dg.MetadataValue.text(f"{day}: {description}"),
                **page_of(context, spec, day, report),
                "status": status,
                "rows": report["rows"],
                "failed_features": dg.MetadataValue.json(report["failed"]),
                "warned_features": dg.MetadataValue.json(report["warned"]),
                "thresholds": dg.MetadataValue.json(report["thresholds"]),
                **{k: dg.MetadataValue.text(v) for k, v in hashes.items()},
            },
        )
        if report["failed"]:
            psis = {n: report["features"][n]["psi"] for n in report["failed"]}
            alert(
                context,
                "ml.inference_drift.fail",
                [f"{n}: PSI {v:.3f} > {spec.monitoring.psi_fail}" for n, v in psis.items()],
                version=record["version"],
            )
        yield dg.AssetCheckResult(
            check_name=CHECK,
            passed=status in ("ok", "warn"),
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            metadata={"failed_features": dg.MetadataValue.json(report["failed"])},
        )

    return inference_drift
