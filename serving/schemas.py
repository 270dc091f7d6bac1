"""The API's request and response models (the OpenAPI document is these pydantic models).

The transaction model is the fraud routes' (`/v1/score`): strict types, the dataset's ranges,
unknown fields refused. A declared lineage's request model is generated in serving/tabular.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ml_assets.core.fraud_schema import CATEGORICAL, NUMERIC, SCHEMA

_BOUNDS = {c.name: c for c in SCHEMA}


def _numeric_field(name: str) -> Any:
    col = _BOUNDS[name]
    kind = int if col.kind == "int" else float
    return (kind, Field(ge=col.min, le=col.max, allow_inf_nan=False))


Transaction = create_model(
    "Transaction",
    __config__=ConfigDict(extra="forbid", strict=True),
    **{c: (Annotated[str, Field(min_length=1, max_length=64)], ...) for c in CATEGORICAL},
    **{c: _numeric_field(c) for c in NUMERIC},
)
Transaction.__doc__ = "One card transaction: the model's features, within the dataset's ranges."


class ScoreResult(BaseModel):
    probability: float
    is_fraud: bool
    threshold: float
    model_version: str


class BatchResult(BaseModel):
    results: list[ScoreResult]
    model_version: str
    count: int


class EmbedResult(BaseModel):
    vectors: list[list[float]]
    dim: int
    truncated: int
    model_version: str


class Hit(BaseModel):
    doc_id: str
    type: str
    title: str
    tags: list[str]
    score: float
    vector_rank: int | None
    lexical_rank: int | None


class SearchResult(BaseModel):
    hits: list[Hit]
    tenant_id: str
    mode: str
    model_version: str
