"""The API's request and response models (the OpenAPI document is these pydantic models).

/v1/score's models come from the lineage that declares `score_routes`: `Transaction` from its
feature schema, like every lineage's row model in serving/tabular.py (strict types, the declared
ranges and categories, unknown fields refused), and `ScoreResult` from its declared decision
(the boolean field it names).
"""

from __future__ import annotations

from pydantic import BaseModel, create_model

from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.platform.score_route import ScoreRoute
from serving.tabular import row_model


def transaction_model(spec: LineageSpec) -> type[BaseModel]:
    """The request model of /v1/score(/batch): one row of `spec`'s model, named Transaction."""
    model = row_model(spec, name="Transaction")
    model.__doc__ = (
        f"One transaction: the features of {spec.registered_model}, within its declared schema."
    )
    return model


def score_models(route: ScoreRoute) -> tuple[type[BaseModel], type[BaseModel]]:
    """/v1/score's and /v1/score/batch's response models: the probability, the route's
    decision under its declared name, the threshold applied and the model version."""
    result = create_model(
        "ScoreResult",
        probability=(float, ...),
        **{route.decision_field: (bool, ...)},  # type: ignore[arg-type]
        threshold=(float, ...),
        model_version=(str, ...),
    )
    result.__doc__ = (
        f"The class-1 probability and `{route.decision_field}`: probability >= threshold."
    )
    batch = create_model(
        "BatchResult",
        results=(list[result], ...),  # type: ignore[valid-type]
        model_version=(str, ...),
        count=(int, ...),
    )
    return result, batch


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
