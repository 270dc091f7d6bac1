"""The resources every asset gets, configured from environment variables at launch."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, EnvVar

from ml_assets.platform.catalog import Catalog
from ml_assets.resources.bento import BentoResource
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource
from ml_assets.resources.storage import ArtifactRefIOManager, ArtifactStore


def resource_defs(catalog: Catalog) -> Definitions:
    """The resources from env vars, and the declared `catalog` (what the gate, the bundle and
    the nightly judge and serve)."""
    return Definitions(
        resources={
            "catalog": catalog,
            "store": ArtifactStore(base_dir=EnvVar("ML_ARTIFACT_ROOT")),
            "io_manager": ArtifactRefIOManager(base_dir=EnvVar("ML_ARTIFACT_ROOT")),
            "mlflow": MlflowResource(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
            "postgres": PostgresResource(dsn=EnvVar("ML_VECTOR_PG_DSN")),
            "bento": BentoResource(home=EnvVar("BENTOML_HOME")),
        }
    )


def local_resources(
    artifact_root: str | Path,
    mlflow: MlflowResource,
    vector_dsn: str | None = None,
    bentoml_home: str | Path | None = None,
    catalog: Catalog | None = None,
) -> dict[str, object]:
    """The same resources with explicit values (tests, benchmarks, scripts); `catalog` for
    the platform-wide assets (the bundle, the nightly, the promote job)."""
    resources: dict[str, object] = {
        "store": ArtifactStore(base_dir=str(artifact_root)),
        "io_manager": ArtifactRefIOManager(base_dir=str(artifact_root)),
        "mlflow": mlflow,
    }
    if vector_dsn is not None:
        resources["postgres"] = PostgresResource(dsn=vector_dsn)
    if bentoml_home is not None:
        resources["bento"] = BentoResource(home=str(bentoml_home))
    if catalog is not None:
        resources["catalog"] = catalog
    return resources
