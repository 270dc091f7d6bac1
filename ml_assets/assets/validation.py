"""Validation stage: the ONNX export against the native model, with blocking checks."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Definitions,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from ml_assets.core.artifacts import ArtifactRef, lineage_of
from ml_assets.core.fraud_data import FEATURES, LABEL
from ml_assets.core.fraud_model import from_skops_bytes, quality
from ml_assets.core.fraud_scorer import OnnxFraudScorer
from ml_assets.core.hashing import canonical_json, read_parquet_bytes
from ml_assets.core.plots import latency_png, md_image, pr_curves_png
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore

GROUP = "validation"
CODE_VERSION = "export_validation_report@1"
ASSET = "export_validation_report"


class ExportValidationConfig(Config):
    max_quality_delta: float = Field(default=0.02, description="Max relative ROC/PR-AUC change.")
    max_latency_regression: float = Field(
        default=0.05, description="ONNX p95 may be at most this much slower than native p95."
    )
    max_proba_diff: float = Field(default=1e-4, description="Max |p_native - p_onnx| on any row.")
    latency_rows: int = Field(default=300, description="Test rows timed one at a time.")
    warmup_rows: int = 30


def latencies_ms(fn: Callable[[int], Any], n: int, warmup: int) -> np.ndarray:
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def _pct(samples: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p95_ms": float(np.percentile(samples, 95)),
    }


@asset(
    group_name=GROUP,
    code_version=CODE_VERSION,
    check_specs=[
        AssetCheckSpec(
            "quality_delta",
            asset=ASSET,
            blocking=True,
            description="ONNX ROC-AUC and PR-AUC within the tolerance of native.",
        ),
        AssetCheckSpec(
            "output_parity",
            asset=ASSET,
            blocking=True,
            description="Max probability difference between native and ONNX.",
        ),
        AssetCheckSpec(
            "latency",
            asset=ASSET,
            blocking=True,
            description="ONNX single-row p95 not more than 5% slower than native.",
        ),
    ],
)
def export_validation_report(
    context: AssetExecutionContext,
    config: ExportValidationConfig,
    store: ArtifactStore,
    mlflow: MlflowResource,
    fraud_model: ArtifactRef,
    fraud_model_onnx: ArtifactRef,
    training_splits: ArtifactRef,
) -> Iterator[Output[ArtifactRef] | AssetCheckResult]:
    """Native vs ONNX on the test split: quality deltas, output parity and single-row latency."""
    with timed() as t:
        df = read_parquet_bytes(training_splits.read_verified())
        test = df[df["split"] == "test"].reset_index(drop=True)
        y = test[LABEL].to_numpy()
        model = from_skops_bytes(fraud_model.read_verified())
        scorer = OnnxFraudScorer(fraud_model_onnx.read_verified())
        p_native = model.predict_proba(test[list(FEATURES)])[:, 1]
        p_onnx = scorer.predict_proba(test)
        q_native, q_onnx = quality(y, p_native), quality(y, p_onnx)
        deltas = {k: abs(q_onnx[k] - q_native[k]) / max(q_native[k], 1e-12) for k in q_native}
        max_diff = float(np.max(np.abs(p_native - p_onnx)))

        n = min(config.latency_rows, len(test))
        context.log.info(f"timing {n} single-row predictions per runtime")
        rows = [test.iloc[[i]][list(FEATURES)] for i in range(n)]
        records = test[list(FEATURES)].head(n).to_dict("records")
        warm = min(config.warmup_rows, n)
        lat_native = latencies_ms(lambda i: model.predict_proba(rows[i]), n, warm)
        lat_onnx = latencies_ms(lambda i: scorer.predict_records([records[i]]), n, warm)
        latency = {"native": _pct(lat_native), "onnx": _pct(lat_onnx), "rows": n}

        # Hashed content: everything that is a function of the inputs. Latency is a property of
        # the machine and the moment, so it is reported beside the report, not inside its hash.
        report = {
            "schema": "ml-assets.export-validation.v1",
            "inputs": {r.asset: r.sha256 for r in (training_splits, fraud_model, fraud_model_onnx)},
            "test_rows": int(len(test)),
            "test_positives": int(y.sum()),
            "native": q_native,
            "onnx": q_onnx,
            "relative_delta": deltas,
            "max_abs_proba_diff": max_diff,
            "thresholds": {
                "max_quality_delta": config.max_quality_delta,
                "max_proba_diff": config.max_proba_diff,
                "max_latency_regression": config.max_latency_regression,
            },
        }
        pr_png = pr_curves_png(y, {"native (scikit-learn)": p_native, "ONNX Runtime": p_onnx})
        lat_png = latency_png({"native": lat_native, "ONNX": lat_onnx})
        ref = store.content().put(
            ASSET,
            canonical_json(report),
            ".json",
            code_version=CODE_VERSION,
            lineage=lineage_of(training_splits, fraud_model, fraud_model_onnx),
            extra={"latency": latency},
        )

        quality_ok = all(d <= config.max_quality_delta for d in deltas.values())
        parity_ok = max_diff <= config.max_proba_diff
        latency_limit = latency["native"]["p95_ms"] * (1 + config.max_latency_regression)
        latency_ok = latency["onnx"]["p95_ms"] <= latency_limit

        table = [
            {
                "metric": "ROC-AUC",
                "native": q_native["roc_auc"],
                "onnx": q_onnx["roc_auc"],
                "relative delta": deltas["roc_auc"],
            },
            {
                "metric": "PR-AUC",
                "native": q_native["pr_auc"],
                "onnx": q_onnx["pr_auc"],
                "relative delta": deltas["pr_auc"],
            },
            {
                "metric": "p50 latency (ms)",
                "native": latency["native"]["p50_ms"],
                "onnx": latency["onnx"]["p50_ms"],
                "relative delta": "-",
            },
            {
                "metric": "p95 latency (ms)",
                "native": latency["native"]["p95_ms"],
                "onnx": latency["onnx"]["p95_ms"],
                "relative delta": "-",
            },
        ]
        verdicts = [
            {
                "check": "quality_delta",
                "passed": quality_ok,
                "rule": f"relative delta <= {config.max_quality_delta:.0%}",
            },
            {
                "check": "output_parity",
                "passed": parity_ok,
                "rule": f"max |p_native - p_onnx| = {max_diff:.2e} <= {config.max_proba_diff:.0e}",
            },
            {
                "check": "latency",
                "passed": latency_ok,
                "rule": f"ONNX p95 {latency['onnx']['p95_ms']:.3f} ms <= {latency_limit:.3f} ms",
            },
        ]
        report_md = "\n\n".join(
            [
                f"### Export validation: fraud_model {fraud_model.sha256[:12]} → ONNX "
                f"{fraud_model_onnx.sha256[:12]}",
                f"Test split: {len(test):,} rows, {int(y.sum())} fraud.",
                md_table(table),
                md_table(verdicts),
                md_image(pr_png, "precision-recall curves"),
                md_image(lat_png, "latency"),
            ]
        )
        run_id = fraud_model.extra["mlflow_run_id"]
        client = mlflow.client
        for k, v in {
            **{f"onnx_test_{k}": v for k, v in q_onnx.items()},
            "onnx_max_abs_proba_diff": max_diff,
            "native_p95_ms": latency["native"]["p95_ms"],
            "onnx_p95_ms": latency["onnx"]["p95_ms"],
        }.items():
            client.log_metric(run_id, k, v)
        mlflow.log_json(run_id, {**report, "latency": latency}, "validation/report.json")
        mlflow.log_bytes(run_id, report_md.encode(), "validation/report.md")
        mlflow.log_bytes(run_id, pr_png, "validation/pr_curve.png")
        passed_all = quality_ok and parity_ok and latency_ok
        client.set_model_version_tag(
            fraud_model.extra["registered_model"],
            fraud_model.extra["model_version"],
            "export_validation",
            "passed" if passed_all else "failed",
        )
    yield hashed_output(
        ref,
        upstream={
            "training_splits": training_splits,
            "fraud_model": fraud_model,
            "fraud_model_onnx": fraud_model_onnx,
        },
        wall_time_s=t["seconds"],
        metadata={
            "report": MetadataValue.md(report_md),
            "onnx_pr_auc": MetadataValue.float(q_onnx["pr_auc"]),
            "native_pr_auc": MetadataValue.float(q_native["pr_auc"]),
            "max_abs_proba_diff": MetadataValue.float(max_diff),
            "thresholds": MetadataValue.json(report["thresholds"]),
            "native_p95_ms": MetadataValue.float(latency["native"]["p95_ms"]),
            "onnx_p95_ms": MetadataValue.float(latency["onnx"]["p95_ms"]),
        },
    )
    yield AssetCheckResult(
        check_name="quality_delta",
        passed=quality_ok,
        severity=AssetCheckSeverity.ERROR,
        metadata={f"{k}_relative_delta": MetadataValue.float(v) for k, v in deltas.items()},
    )
    yield AssetCheckResult(
        check_name="output_parity",
        passed=parity_ok,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "max_abs_proba_diff": MetadataValue.float(max_diff),
            "tolerance": MetadataValue.float(config.max_proba_diff),
        },
    )
    yield AssetCheckResult(
        check_name="latency",
        passed=latency_ok,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "native_p95_ms": MetadataValue.float(latency["native"]["p95_ms"]),
            "onnx_p95_ms": MetadataValue.float(latency["onnx"]["p95_ms"]),
            "limit_ms": MetadataValue.float(latency_limit),
        },
    )


defs = Definitions(assets=[export_validation_report])
