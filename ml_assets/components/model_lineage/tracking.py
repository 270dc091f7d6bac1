"""A declared lineage's fitted model in MLflow: the run (params, metrics, files) and the
registered version, tagged with the sha256 of the model and of every ancestor."""

import tempfile
import time
from typing import Any

import dagster as dg
from mlflow import sklearn as mlflow_sklearn
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature

from ml_assets.components.model_lineage.resolve import LineagePlan
from ml_assets.platform.environment import environment_snapshot, package_versions
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.tabular.model import predict


def _log_batch(mlflow: MlflowResource, run_id: str, params: dict, metrics: dict) -> None:
    now = int(time.time() * 1000)
    ps = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    ms = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
    for i in range(0, max(len(ps), len(ms)), 100):
        mlflow.client.log_batch(run_id, metrics=ms[i : i + 100], params=ps[i : i + 100])


def _estimator_params(estimator: Any) -> dict[str, Any]:
    """The estimator's scalar hyperparameters (nested steps flattened by scikit-learn)."""
    return {
        f"estimator.{k}": v
        for k, v in estimator.get_params(deep=True).items()
        if isinstance(v, str | int | float | bool) or v is None
    }


def track_model(
    plan: LineagePlan,
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    estimator: Any,
    skops: tuple[bytes, list[str]],
    lineage: list[dict[str, str]],
    parts: dict[str, Any],
    scores: dict[str, dict[str, float]],
    trainer: tuple[int, dict[str, Any]],
) -> tuple[str, str]:
    """Log the fitted model to an MLflow run and register it; returns (run id, version).

    `trainer`: the (seed, params) this model was trained with (the YAML's and the run's)."""
    data, skops_types = skops
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions
    names, task = [f.name for f in spec.features], spec.task
    model_sha = sha256_bytes(data)
    hashes = {link["asset"]: link["sha256"] for link in lineage}
    with mlflow.start_run(
        run_name=f"{spec.asset('model')} {model_sha[:12]}",
        tags={
            "code_version": cv["model"],
            "model_sha256": model_sha,
            "lineage": lin.name,
            **{f"data.{a}.sha256": h for a, h in hashes.items()},
        },
    ) as run_id:
        params = {
            "seed": trainer[0],
            "task": task,
            "trainer": plan.trainer_ref,
            "features": ",".join(names),
            "estimator": type(estimator).__name__,
            **{f"trainer.{k}": v for k, v in trainer[1].items()},
            **_estimator_params(estimator),
        }
        metrics = {f"{s}_{m}": v for s, ms in scores.items() for m, v in ms.items()}
        _log_batch(mlflow, run_id, params=params, metrics=metrics)
        mlflow.log_json(run_id, environment_snapshot(), "environment.json")
        mlflow.log_json(run_id, {"lineage": lineage, "model_sha256": model_sha}, "data_hashes.json")
        mlflow.log_json(run_id, spec.to_dict(), "lineage_spec.json")
        mlflow.log_bytes(run_id, data, "model.skops")
        sample = parts["valid"][names].head(5)
        with tempfile.TemporaryDirectory() as tmp:
            versions = package_versions(("scikit-learn", "skops"))
            mlflow_sklearn.save_model(
                estimator,
                f"{tmp}/model",
                serialization_format="skops",
                skops_trusted_types=skops_types,
                signature=infer_signature(sample, predict(estimator, task, sample)),
                pip_requirements=[f"{n}=={v}" for n, v in versions.items()],
            )
            mlflow.client.log_artifacts(run_id, f"{tmp}/model", "model")
        version = mlflow.register_version(
            spec.registered_model,
            run_id,
            "model",
            tags={
                "model_sha256": model_sha,
                "code_version": cv["model"],
                "dagster_run_id": context.run.run_id,
                "lineage": lin.name,
                "task": task,
                **{f"{a}_sha256": h for a, h in hashes.items()},
            },
            description=f"{spec.asset('model')} {model_sha[:12]} from "
            f"{spec.asset('splits')} {hashes[spec.asset('splits')][:12]}",
        )
    return run_id, version
