"""Dagster resources: artifact storage, MLflow tracking/registry, Postgres."""

from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.storage import ArtifactRefIOManager, ArtifactStore

__all__ = ["ArtifactRefIOManager", "ArtifactStore", "MlflowResource"]
