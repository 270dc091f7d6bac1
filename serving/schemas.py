"""The API's request and response models (the OpenAPI document is these pydantic models).

/v1/score's `Transaction` is generated from the feature schema of the lineage that declares
`score_routes` (the fraud detector's YAML in this project), like every lineage's row model in
serving/tabular.py: strict types, the declared ranges and categories, unknown fields refused.
"""

from __future__ import annotations

from pydantic import BaseModel

from ml_assets.core.lineage_spec import LineageSpec
from serving.tabular import row_model


def transaction_model(spec: LineageSpec) -> type[BaseModel]:
    """The request model of /v1/score(/batch): one row of `spec`'s model, named Transaction."""
    model = row_model(spec, name="Transaction")
    model.__doc__ = (
        f"One transaction: the features of {spec.registered_model}, within its declared schema."
    )
    return model


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
