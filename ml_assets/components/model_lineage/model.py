"""The model stages of a declared lineage: model (fitted, tracked, registered) and onnx (its
export, probed in ONNX Runtime and recorded in the registry).

Each asset stores its bytes in the content store and returns `hashed_output` (data version =
sha256 of the bytes).
"""

from dataclasses import asdict, replace
from typing import Any

import dagster as dg
import numpy as np
from pydantic import Field

from ml_assets.components.model_lineage.export import record_export
from ml_assets.components.model_lineage.resolve import LineagePlan
from ml_assets.components.model_lineage.tracking import track_model
from ml_assets.platform.artifacts import ArtifactRef, lineage_of
from ml_assets.platform.hashing import read_parquet_bytes
from ml_assets.platform.provenance import hashed_output, md_table, provenance_document, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore
from ml_assets.tabular.data import SPLITS
from ml_assets.tabular.model import (
    ONNX_TARGET_OPSET,
    evaluate,
    from_skops_bytes,
    native_threads,
    predict,
    to_onnx_bytes,
    to_skops_bytes,
)
from ml_assets.tabular.scorer import OnnxTabularScorer

PROBE_ROWS = 200


class ModelConfig(dg.Config):
    seed: int | None = Field(
        default=None, description="The estimator's random_state (default: YAML's trainer.seed)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Train-function parameters for this run, over the YAML's trainer.params.",
    )


def model_stage(plan: LineagePlan) -> dg.AssetsDefinition:
    """`model`: the declared estimator fitted on the training split, tracked and registered."""
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions
    names = [f.name for f in spec.features]
    task, label = spec.task, spec.label

    @dg.asset(
        key=plan.key("model"),
        kinds={"sklearn", "mlflow"},
        ins=plan.ins("splits"),
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

    return model


def export_stage(plan: LineagePlan) -> dg.AssetsDefinition:
    """`onnx`: the model converted, probed in ONNX Runtime and recorded in the registry."""
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions
    names = [f.name for f in spec.features]
    task = spec.task

    @dg.asset(
        key=plan.key("onnx"),
        kinds={"onnx"},
        ins=plan.ins("model", "splits"),
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

    return onnx
