"""Dagster Components of the platform: a declared spec in, assets, checks and jobs out."""

from ml_assets.components.model_lineage import (
    Dataset,
    ExportValidation,
    Feature,
    Metrics,
    ModelLineage,
    Split,
    Trainer,
)

__all__ = [
    "Dataset",
    "ExportValidation",
    "Feature",
    "Metrics",
    "ModelLineage",
    "Split",
    "Trainer",
]
