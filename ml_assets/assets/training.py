"""Training stage: the fraud model, tracked and registered in MLflow."""

import tempfile
from dataclasses import asdict

from dagster import AssetExecutionContext, Config, Definitions, MetadataValue, Output, asset
from mlflow import sklearn as mlflow_sklearn
from mlflow.models import infer_signature
from pydantic import Field

from ml_assets.core.artifacts import ArtifactRef, lineage_of
from ml_assets.core.environment import environment_snapshot, package_versions
from ml_assets.core.fraud_data import FEATURES, LABEL
from ml_assets.core.fraud_model import (
    SKOPS_TRUSTED_TYPES,
    CurvePoint,
    TrainParams,
    quality,
    to_skops_bytes,
    train,
)
from ml_assets.core.hashing import read_parquet_bytes, sha256_bytes
from ml_assets.core.plots import learning_curve_png, md_image
from ml_assets.core.serving_bundle import FRAUD, REGISTERED
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactStore

GROUP = "training"
CODE_VERSION = "fraud_model@1"
REGISTERED_MODEL = REGISTERED[FRAUD]


class FraudModelConfig(Config):
    seed: int = Field(default=7, description="random_state of the classifier.")
    max_iter: int = 150
    learning_rate: float = 0.06
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 80
    l2_regularization: float = 1.0

    def params(self) -> TrainParams:
        return TrainParams(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
        )


@asset(group_name=GROUP, code_version=CODE_VERSION)
def fraud_model(
    context: AssetExecutionContext,
    config: FraudModelConfig,
    store: ArtifactStore,
    mlflow: MlflowResource,
    training_splits: ArtifactRef,
) -> Output[ArtifactRef]:
    """A gradient-boosting pipeline, tracked in MLflow and registered as fraud-detector."""
    with timed() as t:
        df = read_parquet_bytes(training_splits.read_verified())
        parts = {name: df[df["split"] == name] for name in ("train", "valid", "test")}
        params = config.params()

        def progress(p: CurvePoint) -> None:
            context.log.info(
                f"iteration {p.iteration}/{params.max_iter}: valid PR-AUC {p.valid_pr_auc:.4f}, "
                f"ROC-AUC {p.valid_roc_auc:.4f}"
            )

        model, curve = train(parts["train"], parts["valid"], params, config.seed, progress)
        scores = {
            name: quality(part[LABEL].to_numpy(), model.predict_proba(part[list(FEATURES)])[:, 1])
            for name, part in parts.items()
        }
        data = to_skops_bytes(model)
        lineage = lineage_of(training_splits)
        hashes = {link["asset"]: link["sha256"] for link in lineage}
        model_sha = sha256_bytes(data)
        curve_png = learning_curve_png(
            [p.iteration for p in curve],
            [p.train_pr_auc for p in curve],
            [p.valid_pr_auc for p in curve],
        )
        with mlflow.start_run(
            run_name=f"fraud_model {model_sha[:12]}",
            tags={
                "code_version": CODE_VERSION,
                "model_sha256": model_sha,
                **{f"data.{a}.sha256": s for a, s in hashes.items()},
            },
        ) as run_id:
            client = mlflow.client
            for key, value in {**asdict(params), "seed": config.seed}.items():
                client.log_param(run_id, key, value)
            for split, metrics in scores.items():
                for name, value in metrics.items():
                    client.log_metric(run_id, f"{split}_{name}", value)
            for p in curve:
                client.log_metric(run_id, "curve_valid_pr_auc", p.valid_pr_auc, step=p.iteration)
                client.log_metric(run_id, "curve_train_pr_auc", p.train_pr_auc, step=p.iteration)
            mlflow.log_json(run_id, environment_snapshot(), "environment.json")
            mlflow.log_json(
                run_id, {"lineage": lineage, "model_sha256": model_sha}, "data_hashes.json"
            )
            mlflow.log_bytes(run_id, data, "fraud_model.skops")
            mlflow.log_bytes(run_id, curve_png, "learning_curve.png")
            sample = parts["valid"][list(FEATURES)].head(5)
            with tempfile.TemporaryDirectory() as tmp:
                versions = package_versions(("scikit-learn", "skops"))
                model_dir = f"{tmp}/model"
                mlflow_sklearn.save_model(
                    model,
                    model_dir,
                    serialization_format="skops",
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                    signature=infer_signature(sample, model.predict_proba(sample)[:, 1]),
                    pip_requirements=[f"{n}=={v}" for n, v in versions.items()],
                )
                client.log_artifacts(run_id, model_dir, "model")
            registry = mlflow.register_version(
                REGISTERED_MODEL,
                run_id,
                "model",
                tags={
                    "model_sha256": model_sha,
                    "code_version": CODE_VERSION,
                    "dagster_run_id": context.run.run_id,
                    **{f"{a}_sha256": s for a, s in hashes.items()},
                },
                description=(
                    f"fraud_model {model_sha[:12]} from training_splits "
                    f"{hashes['training_splits'][:12]}"
                ),
            )
        ref = store.content().put(
            "fraud_model",
            data,
            ".skops",
            code_version=CODE_VERSION,
            lineage=lineage,
            extra={
                "mlflow_run_id": run_id,
                "registered_model": REGISTERED_MODEL,
                "model_version": registry,
                "test_metrics": scores["test"],
            },
        )
    context.log.info(f"registered {REGISTERED_MODEL} version {registry} (run {run_id})")
    rows = [{"split": s, **m} for s, m in scores.items()]
    return hashed_output(
        ref,
        upstream={"training_splits": training_splits},
        seeds={"model_seed": config.seed},
        wall_time_s=t["seconds"],
        metadata={
            "mlflow_run_id": MetadataValue.text(run_id),
            "registered_model": MetadataValue.text(f"{REGISTERED_MODEL} v{registry}"),
            "test_roc_auc": MetadataValue.float(scores["test"]["roc_auc"]),
            "test_pr_auc": MetadataValue.float(scores["test"]["pr_auc"]),
            "metrics": MetadataValue.md(md_table(rows)),
            "learning_curve": MetadataValue.md(md_image(curve_png, "learning curve")),
        },
    )


defs = Definitions(assets=[fraud_model])
