"""A declared lineage's export validation report: native vs ONNX, with blocking checks.

The checks' evaluations (keyed by the report's data version, whose `upstream_data_versions`
name the ONNX bytes) are what the promotion gate reads; see
`ml_assets.platform.validation_records.model_evidence`.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field
from sklearn.metrics import precision_recall_curve

from ml_assets.components.model_lineage.resolve import LineagePlan
from ml_assets.platform.artifacts import ArtifactRef, lineage_of
from ml_assets.platform.hashing import canonical_json, read_parquet_bytes
from ml_assets.platform.inline_plots import inline_plot
from ml_assets.platform.plots import latency_png, md_image, pr_curves_png
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.tabular.model import (
    TASK_METRICS,
    evaluate,
    from_skops_bytes,
    native_threads,
    predict,
)
from ml_assets.tabular.scorer import OnnxTabularScorer

REPORT_SCHEMA = "ml-assets.export-validation.v1"
CHECK_DESCRIPTIONS = {
    "quality_delta": "Each ONNX test metric within its allowed relative delta of native.",
    "output_parity": "Max |native - ONNX| output on any test row within max_output_diff.",
    "latency": "ONNX single-row p95 not more than max_latency_regression slower than native.",
}


def latencies_ms(fn: Callable[[int], Any], n: int, warmup: int) -> np.ndarray:
    """`n` timed calls fn(i) after `warmup` untimed ones, in milliseconds."""
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


class ReportConfig(dg.Config):
    """One run's stricter thresholds (a run can tighten a declared gate, never loosen it)."""

    max_output_diff: float | None = Field(
        default=None, description="output_parity for this run: at most the YAML's."
    )
    max_quality_delta: float | None = Field(
        default=None, description="quality_delta for this run, every metric: at most the YAML's."
    )


def stricter(thresholds: dict[str, float], config: ReportConfig, where: str) -> dict[str, float]:
    """The declared thresholds with this run's tighter ones; a looser one is refused."""
    out = dict(thresholds)
    asked = {"max_output_diff": config.max_output_diff}
    if config.max_quality_delta is not None:
        asked.update({k: config.max_quality_delta for k in out if k.startswith("max_relative_")})
    for name, value in asked.items():
        if value is None:
            continue
        if value > out[name]:
            raise dg.Failure(
                f"{where}: run config {name}={value} is looser than the declared {out[name]}; "
                "a run can only tighten a gate (change the lineage's YAML to loosen it)"
            )
        out[name] = value
    return out


def report_asset(
    plan: LineagePlan,
    key: Callable[[str], dg.AssetKey],
    ins: Callable[..., dict[str, dg.AssetIn]],
) -> dg.AssetsDefinition:
    """The `[name, export_validation_report]` asset with its blocking checks in the same step."""
    lin, spec = plan.lineage, plan.spec
    names = [f.name for f in spec.features]
    task, label, metrics = spec.task, spec.label, TASK_METRICS[spec.task]
    asset_key = key("export_validation_report")
    ev = lin.export_validation

    @dg.asset(
        key=asset_key,
        kinds={"onnx"},
        ins=ins("splits", "model", "onnx"),
        group_name=lin.name,
        code_version=plan.code_versions["export_validation_report"],
        description="Native vs ONNX on the test split: metric deltas, output parity and "
        "single-row latency, with blocking checks.",
        check_specs=[
            dg.AssetCheckSpec(c, asset=asset_key, blocking=True, description=CHECK_DESCRIPTIONS[c])
            for c in spec.report_checks
        ],
    )
    def export_validation_report(
        context: dg.AssetExecutionContext,
        config: ReportConfig,
        store: ArtifactStore,
        mlflow: MlflowResource,
        splits: ArtifactRef,
        model: ArtifactRef,
        onnx: ArtifactRef,
    ) -> Iterator[dg.Output[ArtifactRef] | dg.AssetCheckResult]:
        thresholds = stricter(spec.thresholds, config, spec.asset("export_validation_report"))
        with timed() as t:
            df = read_parquet_bytes(splits.read_verified())
            test = df[df["split"] == "test"].reset_index(drop=True)
            y = test[label].to_numpy()
            estimator = from_skops_bytes(model.read_verified(), model.extra["skops_trusted_types"])
            scorer = OnnxTabularScorer(onnx.read_verified(), spec.features, task)
            with native_threads(lin.trainer.threads):
                p_native = predict(estimator, task, test[names])
            p_onnx = scorer.predict_columns({n: test[n].to_numpy() for n in names})
            q_native, q_onnx = evaluate(task, y, p_native), evaluate(task, y, p_onnx)
            deltas = {
                m: abs(q_onnx[m] - q_native[m]) / max(abs(q_native[m]), 1e-12) for m in metrics
            }
            max_diff = float(np.max(np.abs(p_native - p_onnx)))

            n = min(ev.latency_rows, len(test))
            context.log.info(f"timing {n} single-row predictions per runtime")
            rows = [test.iloc[[i]][names] for i in range(n)]
            records = test[names].head(n).to_dict("records")
            warm = min(ev.warmup_rows, n)
            with native_threads(lin.trainer.threads):
                lat_native = latencies_ms(lambda i: predict(estimator, task, rows[i]), n, warm)
            lat_onnx = latencies_ms(lambda i: scorer.predict_records([records[i]]), n, warm)
            latency = {"native": _pct(lat_native), "onnx": _pct(lat_onnx), "rows": n}

            # Hashed content: a function of the inputs only. Latency belongs to the machine and
            # the moment, so it is reported beside the report, not inside its hash.
            report = {
                "schema": REPORT_SCHEMA,
                "lineage": lin.name,
                "registered_model": spec.registered_model,
                "task": task,
                "inputs": {r.asset: r.sha256 for r in (splits, model, onnx)},
                "test_rows": int(len(test)),
                "native": q_native,
                "onnx": q_onnx,
                "relative_delta": deltas,
                "max_abs_output_diff": max_diff,
                "thresholds": thresholds,
            }
            ref = store.content().put(
                spec.asset("export_validation_report"),
                canonical_json(report),
                ".json",
                code_version=plan.code_versions["export_validation_report"],
                lineage=lineage_of(splits, model, onnx),
                extra={"latency": latency},
            )
            verdicts = _verdicts(thresholds, deltas, max_diff, latency)
            report_md = _markdown(plan, model, onnx, len(test), q_native, q_onnx, deltas, latency)
            report_md += "\n\n" + md_table(
                [{"check": c, "passed": ok, "rule": rule} for c, (ok, rule, _) in verdicts.items()]
            )
            if task == "classification":
                png = pr_curves_png(y, {"native (scikit-learn)": p_native, "ONNX Runtime": p_onnx})
                report_md += "\n\n" + md_image(png, "precision-recall curves")
            report_md += "\n\n" + md_image(
                latency_png({"native": lat_native, "ONNX": lat_onnx}), "latency"
            )
            passed_all = all(ok for ok, _, _ in verdicts.values())
            plots = _inline_plots(task, y, p_native, p_onnx, lat_native, lat_onnx)
            _log_to_mlflow(
                mlflow,
                onnx,
                report,
                latency,
                report_md,
                q_onnx,
                max_diff,
                passed_all,
                context.run.run_id,
            )
        # The version that holds this ONNX file (its model's own, or one derived from it).
        version = f"{onnx.extra['registered_model']} v{onnx.extra['model_version']}"
        yield hashed_output(
            ref,
            upstream={
                spec.asset("splits"): splits,
                spec.asset("model"): model,
                spec.asset("onnx"): onnx,
            },
            wall_time_s=t["seconds"],
            metadata={
                "verdict": dg.MetadataValue.text(
                    _verdict_line(spec, verdicts, q_native, q_onnx, latency, version)
                ),
                "headline": dg.MetadataValue.md(md_table(_headline(q_native, q_onnx, deltas))),
                **{k: dg.MetadataValue.md(v) for k, v in plots.items()},
                "check_verdicts": dg.MetadataValue.md(
                    md_table([{"check": c, "passed": ok} for c, (ok, _, _) in verdicts.items()])
                ),
                "report": dg.MetadataValue.md(report_md),
                "registered_model": dg.MetadataValue.text(version),
                **{f"native_{m}": dg.MetadataValue.float(v) for m, v in q_native.items()},
                **{f"onnx_{m}": dg.MetadataValue.float(v) for m, v in q_onnx.items()},
                "max_abs_output_diff": dg.MetadataValue.float(max_diff),
                "thresholds": dg.MetadataValue.json(thresholds),
                **{
                    f"{rt}_{p}": dg.MetadataValue.float(latency[rt][p])
                    for rt in ("native", "onnx")
                    for p in ("p50_ms", "p95_ms")
                },
            },
        )
        for check in spec.report_checks:
            ok, rule, md = verdicts[check]
            yield dg.AssetCheckResult(
                check_name=check,
                passed=ok,
                severity=dg.AssetCheckSeverity.ERROR,
                description=rule,
                metadata={k: dg.MetadataValue.float(v) for k, v in md.items()},
            )

    return export_validation_report


def _verdict_line(
    spec: Any,
    verdicts: dict[str, tuple[bool, str, dict[str, float]]],
    q_native: dict[str, float],
    q_onnx: dict[str, float],
    latency: dict[str, Any],
    version: str,
) -> str:
    """One line: did the export pass, and how good is it."""
    gated = [c for c in spec.report_checks if c in verdicts]
    passed = [c for c in gated if verdicts[c][0]]
    failed = sorted(set(gated) - set(passed))
    word = "PASSED" if not failed else "FAILED (" + ", ".join(failed) + ")"
    m = spec.primary_metric
    return (
        f"{word}: {len(passed)}/{len(gated)} blocking checks. {version}: ONNX test {m} "
        f"{q_onnx[m]:.4g} (native {q_native[m]:.4g}); ONNX p95 {latency['onnx']['p95_ms']:.3g} ms "
        f"(native {latency['native']['p95_ms']:.3g} ms)."
    )


def _headline(
    q_native: dict[str, float], q_onnx: dict[str, float], deltas: dict[str, float]
) -> list[dict[str, Any]]:
    return [
        {"metric": m, "ONNX": q_onnx[m], "native": q_native[m], "relative delta": deltas[m]}
        for m in q_native
    ]


def _inline_plots(
    task: str,
    y: np.ndarray,
    p_native: np.ndarray,
    p_onnx: np.ndarray,
    lat_native: np.ndarray,
    lat_onnx: np.ndarray,
) -> dict[str, str]:
    """The plots shown on the page without a click (ml_assets/platform/inline_plots.py)."""
    out = {}
    if task == "classification":
        curves = {}
        for name, p in (("native", p_native), ("ONNX", p_onnx)):
            precision, recall, _ = precision_recall_curve(y, p)
            curves[name] = (recall[::-1].tolist(), precision[::-1].tolist())
        out["pr_curve_plot"] = inline_plot("precision-recall (test)", curves, "recall", "precision")
    pct = np.linspace(0, 100, 41)
    out["latency_plot"] = inline_plot(
        "single-row latency",
        {
            name: (pct.tolist(), np.log10(np.percentile(lat, pct)).tolist())
            for name, lat in (("native", lat_native), ("ONNX", lat_onnx))
        },
        "percentile",
        "log10 ms",
    )
    return out


def _verdicts(
    thresholds: dict[str, float],
    deltas: dict[str, float],
    max_diff: float,
    latency: dict[str, Any],
) -> dict[str, tuple[bool, str, dict[str, float]]]:
    """Each check: (passed, the rule as text, its metadata)."""
    limits = {m: thresholds[f"max_relative_delta_{m}"] for m in deltas}
    out = {
        "quality_delta": (
            all(deltas[m] <= limits[m] for m in deltas),
            "; ".join(f"{m} relative delta {deltas[m]:.2e} <= {limits[m]:.0e}" for m in deltas),
            {f"{m}_relative_delta": d for m, d in deltas.items()},
        ),
        "output_parity": (
            bool(max_diff <= thresholds["max_output_diff"]),
            f"max |native - onnx| = {max_diff:.2e} <= {thresholds['max_output_diff']:.0e}",
            {"max_abs_output_diff": max_diff, "tolerance": thresholds["max_output_diff"]},
        ),
    }
    if "max_latency_regression" in thresholds:
        limit = latency["native"]["p95_ms"] * (1 + thresholds["max_latency_regression"])
        onnx_p95 = latency["onnx"]["p95_ms"]
        out["latency"] = (
            onnx_p95 <= limit,
            f"ONNX p95 {onnx_p95:.3f} ms <= {limit:.3f} ms",
            {
                "native_p95_ms": latency["native"]["p95_ms"],
                "onnx_p95_ms": onnx_p95,
                "limit_ms": limit,
            },
        )
    return out


def _markdown(
    plan: LineagePlan,
    model: ArtifactRef,
    onnx: ArtifactRef,
    test_rows: int,
    q_native: dict[str, float],
    q_onnx: dict[str, float],
    deltas: dict[str, float],
    latency: dict[str, Any],
) -> str:
    table: list[dict[str, Any]] = [
        {"metric": m, "native": q_native[m], "onnx": q_onnx[m], "relative delta": deltas[m]}
        for m in q_native
    ]
    for p in ("p50_ms", "p95_ms"):
        table.append(
            {
                "metric": f"{p[:3]} latency (ms)",
                "native": latency["native"][p],
                "onnx": latency["onnx"][p],
                "relative delta": "-",
            }
        )
    return "\n\n".join(
        [
            f"### Export validation: {plan.spec.asset('model')} {model.sha256[:12]} → ONNX "
            f"{onnx.sha256[:12]}",
            f"Test split: {test_rows:,} rows.",
            md_table(table),
        ]
    )


def _log_to_mlflow(
    mlflow: MlflowResource,
    onnx: ArtifactRef,
    report: dict[str, Any],
    latency: dict[str, Any],
    report_md: str,
    q_onnx: dict[str, float],
    max_diff: float,
    passed_all: bool,
    dagster_run_id: str,
) -> None:
    """A copy for people on the run and version that hold the ONNX file; the proof is Dagster's
    check records. Each report run adds its own files (validation/<Dagster run id>/): a
    registered version's files are never rewritten."""
    run_id = onnx.extra["mlflow_run_id"]
    client = mlflow.client
    for k, v in {
        **{f"onnx_test_{k}": v for k, v in q_onnx.items()},
        "onnx_max_abs_output_diff": max_diff,
        "native_p95_ms": latency["native"]["p95_ms"],
        "onnx_p95_ms": latency["onnx"]["p95_ms"],
    }.items():
        client.log_metric(run_id, k, v)
    folder = f"validation/{dagster_run_id}"
    mlflow.log_json(run_id, {**report, "latency": latency}, f"{folder}/report.json")
    mlflow.log_bytes(run_id, report_md.encode(), f"{folder}/report.md")
    client.set_model_version_tag(
        onnx.extra["registered_model"],
        onnx.extra["model_version"],
        "export_validation",
        "passed" if passed_all else "failed",
    )
