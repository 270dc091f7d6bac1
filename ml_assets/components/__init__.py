"""Dagster Components of the platform: a declared spec in, assets, checks and jobs out."""

from ml_assets.components.model_lineage.component import ModelLineage
from ml_assets.components.model_lineage.fields import (
    Card,
    Dataset,
    ExportValidation,
    Feature,
    Metrics,
    Split,
    Trainer,
)
from ml_assets.components.search_index.component import ReindexSensor, SearchIndex, Tenant

__all__ = [
    "Card",
    "Dataset",
    "ExportValidation",
    "Feature",
    "Metrics",
    "ModelLineage",
    "ReindexSensor",
    "SearchIndex",
    "Split",
    "Tenant",
    "Trainer",
]
