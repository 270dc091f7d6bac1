"""Request and response models for every declared lineage's model, generated from its feature
schema (the `lineage` a bundle entry carries): strict types, ranges and categories, so a bad
row is a 400 with pydantic's message before it reaches ONNX Runtime."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ml_assets.core.lineage_spec import FeatureSpec, LineageSpec

MAX_ROWS = 1_000


class Prediction(BaseModel):
    """One row's prediction: the class-1 probability (classification) or the value."""

    prediction: float
    task: str
    model_version: str


class BatchPrediction(BaseModel):
    predictions: list[float]
    count: int
    task: str
    model_version: str


def _field(f: FeatureSpec) -> Any:
    if f.kind == "category":
        if not f.categories:
            return (
                Annotated[str, Field(min_length=1, max_length=200, description=f.description)],
                ...,
            )
        return (Literal[tuple(f.categories)], Field(..., description=f.description))  # type: ignore[valid-type]
    kind = int if f.kind == "int" else float
    return (kind, Field(..., ge=f.min, le=f.max, allow_inf_nan=False, description=f.description))


def _class_name(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[^0-9A-Za-z]+", name) if p) or "Model"


def row_model(spec: LineageSpec) -> type[BaseModel]:
    """The pydantic model of one input row of `spec`'s model."""
    model = create_model(
        f"{_class_name(spec.name)}Row",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{f.name: _field(f) for f in spec.features},
    )
    model.__doc__ = f"One input row of {spec.registered_model} ({spec.task}), within its schema."
    return model
