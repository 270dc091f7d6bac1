"""The assets of one declared lineage: raw_data (+ expectations), splits, model, onnx.

Each one stores its bytes in the content store and returns `hashed_output` (data version =
sha256 of the bytes); the export validation report is in `lineage_report`.
"""

import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from ml_assets.assets.data import require_validated, validation_record_path
from ml_assets.assets.export import provenance_document
from ml_assets.components.lineage_export import record_export
from ml_assets.components.lineage_report import report_asset
from ml_assets.components.lineage_tracking import track_model
from ml_assets.components.resolve import LineagePlan
from ml_assets.core.artifacts import ArtifactRef, atomic_write, lineage_of
from ml_assets.core.hashing import canonical_json, parquet_bytes, read_parquet_bytes
from ml_assets.core.tabular_data import SPLITS, SourceError, generate, read_table, split_frame
from ml_assets.core.tabular_expectations import validate_frame
from ml_assets.core.tabular_model import (
    ONNX_TARGET_OPSET,
    evaluate,
    from_skops_bytes,
    native_threads,
    predict,
    to_onnx_bytes,
    to_skops_bytes,
)
from ml_assets.core.tabular_scorer import OnnxTabularScorer
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from dagster_mlflow import end_mlflow_on_run_finished

STAGES = ("raw_data", "splits", "model", "onnx", "export_validation_report")
PROBE_ROWS = 200


class RawDataConfig(dg.Config):
    source_path: str | None = Field(
        default=None,
        description="A CSV or Parquet file to ingest instead of the lineage's declared source.",
    )
    rows: int | None = Field(default=None, description="Rows to generate (default: YAML's).")
    seed: int | None = Field(default=None, description="Generator seed (default: YAML's).")


class ModelConfig(dg.Config):
    seed: int | None = Field(
        default=None, description="The estimator's random_state (default: YAML's trainer.seed)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Train-function parameters for this run, over the YAML's trainer.params.",
    )


def build_lineage(plan: LineagePlan) -> dg.Definitions:
    """Assets, checks and the job of one lineage, keyed `[name, stage]` in group `name`."""
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions
    names = [f.name for f in spec.features]
    task, label = spec.task, spec.label

    def key(stage: str) -> dg.AssetKey:
        return dg.AssetKey([lin.name, stage])

    def ins(*stages: str) -> dict[str, dg.AssetIn]:
        return {s: dg.AssetIn(key(s)) for s in stages}

    @dg.asset(
        key=key("raw_data"),
        kinds={"parquet"},
        group_name=lin.name,
        code_version=cv["raw_data"],
        description=f"{lin.name}'s raw data: generated from a seed, or ingested from a file.",
    )
    def raw_data(
        context: dg.AssetExecutionContext, config: RawDataConfig, store: ArtifactStore
    ) -> dg.Output[ArtifactRef]:
        path = config.source_path or lin.dataset.path
        rows = lin.dataset.rows if config.rows is None else config.rows
        seed = lin.dataset.seed if config.seed is None else config.seed
        with timed() as t:
            try:
                if path:
                    df = read_table(path)
                    source = str(Path(path).expanduser().resolve())
                else:
                    df = generate(plan.generator, rows, seed, str(plan.generator_ref))
                    source = str(plan.generator_ref)
            except SourceError as exc:
                raise dg.Failure(f"{spec.asset('raw_data')}: {exc}") from exc
            context.log.info(f"{len(df):,} rows from {source}")
            ref = store.content().put(
                spec.asset("raw_data"),
                parquet_bytes(df),
                ".parquet",
                code_version=cv["raw_data"],
                extra={"source": source, "rows": len(df)},
            )
        return hashed_output(
            ref,
            seeds={} if path else {"generator_seed": seed},
            wall_time_s=t["seconds"],
            metadata={
                "source": dg.MetadataValue.text(source),
                "dagster/row_count": dg.MetadataValue.int(len(df)),
                "columns": dg.MetadataValue.int(len(df.columns)),
                "preview": dg.MetadataValue.md(df.head(5).to_markdown(index=False)),
            },
        )

    @dg.asset_check(
        asset=key("raw_data"),
        name=spec.expectations_check,
        blocking=True,
        description="Great Expectations generated from the declared schema: columns, types, "
        "nulls, ranges, categories, unique ids, row count.",
    )
    def expectations(raw_data: ArtifactRef, store: ArtifactStore) -> dg.AssetCheckResult:
        df = read_parquet_bytes(raw_data.read_verified())
        outcomes = validate_frame(
            df,
            spec.features,
            label=label,
            task=task,
            id_column=lin.dataset.id_column,
            min_rows=lin.dataset.min_rows,
            label_rate=plan.spec.label_rate,
            name=spec.asset("raw_data"),
        )
        failed = [o for o in outcomes if not o.success]
        atomic_write(
            validation_record_path(store, raw_data),
            canonical_json(
                {
                    "sha256": raw_data.sha256,
                    "passed": not failed,
                    "failed": [o.__dict__ for o in failed],
                }
            ),
        )
        rows = [
            {"expectation": o.expectation, "column": o.column, "ok": o.success, "detail": o.detail}
            for o in outcomes
        ]
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{len(outcomes)} expectations passed"
            if not failed
            else f"{len(failed)} of {len(outcomes)} expectations failed: "
            + "; ".join(f"{o.column}: {o.expectation} ({o.detail})" for o in failed[:5]),
            metadata={
                "evaluated": dg.MetadataValue.int(len(outcomes)),
                "failed": dg.MetadataValue.int(len(failed)),
                "data_sha256": dg.MetadataValue.text(raw_data.sha256),
                "results": dg.MetadataValue.md(md_table(rows)),
            },
        )

    @dg.asset(
        key=key("splits"),
        kinds={"parquet"},
        ins=ins("raw_data"),
        group_name=lin.name,
        code_version=cv["splits"],
        description="A deterministic train/valid/test split: one Parquet with a `split` column.",
    )
    def splits(
        context: dg.AssetExecutionContext, store: ArtifactStore, raw_data: ArtifactRef
    ) -> dg.Output[ArtifactRef]:
        require_validated(store, raw_data)
        with timed() as t:
            df = read_parquet_bytes(raw_data.read_verified())
            try:
                out = split_frame(
                    df,
                    label=label,
                    task=task,
                    valid_fraction=lin.split.valid_fraction,
                    test_fraction=lin.split.test_fraction,
                    seed=lin.split.seed,
                    id_column=lin.dataset.id_column,
                )
            except SourceError as exc:
                raise dg.Failure(f"{spec.asset('splits')}: {exc}") from exc
            ref = store.content().put(
                spec.asset("splits"),
                parquet_bytes(out),
                ".parquet",
                code_version=cv["splits"],
                lineage=lineage_of(raw_data),
            )
        summary = out.groupby("split", sort=False)[label].agg(rows="size", label_mean="mean")
        context.log.info(f"split {len(out):,} rows: {summary['rows'].to_dict()}")
        return hashed_output(
            ref,
            upstream={spec.asset("raw_data"): raw_data},
            seeds={"split_seed": lin.split.seed},
            wall_time_s=t["seconds"],
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(out)),
                "splits": dg.MetadataValue.md(md_table(summary.reset_index().to_dict("records"))),
            },
        )

    @dg.asset(
        key=key("model"),
        kinds={"sklearn", "mlflow"},
        ins=ins("splits"),
        group_name=lin.name,
        code_version=cv["model"],
        description=f"The estimator from {plan.trainer_ref}, fitted on the training split, "
        f"tracked in MLflow and registered as {spec.registered_model}.",
    )
    def model(
        context: dg.AssetExecutionContext,
        config: ModelConfig,
        store: ArtifactStore,
        mlflow: MlflowResource,
        splits: ArtifactRef,
    ) -> dg.Output[ArtifactRef]:
        with timed() as t:
            df = read_parquet_bytes(splits.read_verified())
            parts = {s: df[df["split"] == s] for s in SPLITS}
            trainer = plan.trainer_args(config.seed, config.params)
            try:
                estimator = plan.build_estimator(*trainer)
            except TypeError as exc:
                raise dg.Failure(f"{spec.asset('model')}: {exc}") from exc
            with native_threads(lin.trainer.threads):
                estimator.fit(parts["train"][names], parts["train"][label].to_numpy())
                scores = {
                    s: evaluate(task, p[label].to_numpy(), predict(estimator, task, p[names]))
                    for s, p in parts.items()
                }
            data, skops_types = to_skops_bytes(estimator)
            lineage = lineage_of(splits)
            run_id, version = track_model(
                plan,
                context,
                mlflow,
                estimator,
                (data, skops_types),
                lineage,
                parts,
                scores,
                trainer,
            )
            ref = store.content().put(
                spec.asset("model"),
                data,
                ".skops",
                code_version=cv["model"],
                lineage=lineage,
                extra={
                    "mlflow_run_id": run_id,
                    "registered_model": spec.registered_model,
                    "model_version": version,
                    "test_metrics": scores["test"],
                    "skops_trusted_types": skops_types,
                },
            )
        context.log.info(f"registered {spec.registered_model} version {version} (run {run_id})")
        return hashed_output(
            ref,
            upstream={spec.asset("splits"): splits},
            seeds={"model_seed": trainer[0], "split_seed": lin.split.seed},
            wall_time_s=t["seconds"],
            metadata={
                "mlflow_run_id": dg.MetadataValue.text(run_id),
                "registered_model": dg.MetadataValue.text(f"{spec.registered_model} v{version}"),
                **{f"test_{m}": dg.MetadataValue.float(v) for m, v in scores["test"].items()},
                "metrics": dg.MetadataValue.md(
                    md_table([{"split": s, **m} for s, m in scores.items()])
                ),
                "trainer": dg.MetadataValue.text(plan.trainer_ref),
            },
        )

    @dg.asset(
        key=key("onnx"),
        kinds={"onnx"},
        ins=ins("model", "splits"),
        group_name=lin.name,
        code_version=cv["onnx"],
        description="The model converted by skl2onnx (one named input per feature), checked "
        "to load and score in ONNX Runtime, with its provenance logged to the model's run "
        "(a new registered version if that one already holds other bytes).",
    )
    def onnx(
        context: dg.AssetExecutionContext,
        store: ArtifactStore,
        mlflow: MlflowResource,
        model: ArtifactRef,
        splits: ArtifactRef,
    ) -> dg.Output[ArtifactRef]:
        with timed() as t:
            estimator = from_skops_bytes(model.read_verified(), model.extra["skops_trusted_types"])
            try:
                data = to_onnx_bytes(estimator, spec.features, task, spec.registered_model)
            except ValueError as exc:
                raise dg.Failure(f"{spec.asset('onnx')}: {exc}") from exc
            scorer = OnnxTabularScorer(data, spec.features, task)
            df = read_parquet_bytes(splits.read_verified())
            probe = df[df["split"] == "test"].head(PROBE_ROWS)
            with native_threads(lin.trainer.threads):
                native = predict(estimator, task, probe[names])
            exported = scorer.predict_columns({n: probe[n].to_numpy() for n in names})
            if exported.shape != native.shape or not np.all(np.isfinite(exported)):
                raise dg.Failure(f"{spec.asset('onnx')}: ONNX returned malformed outputs on probes")
            probe_diff = float(np.max(np.abs(native - exported)))
            ref = store.content().put(
                spec.asset("onnx"),
                data,
                ".onnx",
                code_version=cv["onnx"],
                lineage=lineage_of(model),
            )
            name = model.extra["registered_model"]
            home = record_export(
                mlflow, name, model.extra["model_version"], ref, data, context.run.run_id
            )
            # The ref names the version that holds these bytes (a new one if the model's own
            # version holds another export): the report and the gate follow it there.
            ref = replace(
                ref,
                extra={
                    "mlflow_run_id": home.run_id,
                    "registered_model": name,
                    "model_version": home.version,
                },
            )
        context.log.info(home.summary(name, ref.sha256))
        provenance = provenance_document(ref, name, home.version)
        return hashed_output(
            ref,
            upstream={spec.asset("model"): model, spec.asset("splits"): splits},
            wall_time_s=t["seconds"],
            metadata={
                "opset": dg.MetadataValue.json(ONNX_TARGET_OPSET),
                "probe_max_abs_diff": dg.MetadataValue.float(probe_diff),
                "registered_model": dg.MetadataValue.text(f"{name} v{home.version}"),
                "registry": dg.MetadataValue.text(home.action),
                "provenance_chain": dg.MetadataValue.md(md_table(provenance["chain"])),
                "features": dg.MetadataValue.json([asdict(f) for f in spec.features]),
            },
        )

    report = report_asset(plan, key, ins)
    job = dg.define_asset_job(
        f"{lin.name}_lineage_job",
        selection=dg.AssetSelection.assets(*(key(s) for s in STAGES)),
        description=f"{lin.name}: raw_data → … → export_validation_report, with every check.",
        hooks={end_mlflow_on_run_finished},
    )
    return dg.Definitions(
        assets=[raw_data, splits, model, onnx, report], asset_checks=[expectations], jobs=[job]
    )
