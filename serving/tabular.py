"""Request and response models for every declared lineage's model, generated from its feature
schema (the `lineage` a bundle entry carries): strict types, ranges and categories, so a bad
row is a 400 with pydantic's message before it reaches ONNX Runtime."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ml_assets.platform.lineage_spec import FeatureSpec, LineageSpec

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


def row_model(spec: LineageSpec, name: str | None = None) -> type[BaseModel]:
    """The pydantic model of one input row of `spec`'s model (`name`: its schema's name)."""
    model = create_model(
        name or f"{_class_name(spec.name)}Row",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{f.name: _field(f) for f in spec.features},
    )
    model.__doc__ = f"One input row of {spec.registered_model} ({spec.task}), within its schema."
    return model


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def lineage_methods(role: str, spec: LineageSpec) -> dict[str, Any]:
    """POST /v1/models/<name>/predict and /predict/batch as BentoML API methods, typed by the
    lineage's schema: the class's routes (lineage_apis), and what serving/lineage_path.py
    answers with for a lineage a reload brought (same input model, same code)."""
    import bentoml

    row = row_model(spec)

    async def predict(self: Any, features: Any) -> Prediction:
        values, version = self._predict(role, [features.model_dump()], "predict")
        return Prediction(prediction=values[0], task=spec.task, model_version=version)

    async def predict_batch(self: Any, rows: Any) -> BatchPrediction:
        values, version = self._predict(role, [r.model_dump() for r in rows], "predict_batch")
        return BatchPrediction(
            predictions=values, count=len(values), task=spec.task, model_version=version
        )

    batch = Annotated[list[row], Field(min_length=1, max_length=MAX_ROWS)]  # type: ignore[valid-type]
    # BentoML reads the request schema from the annotations: the generated models, not names.
    predict.__annotations__ = {"features": row, "return": Prediction}
    predict_batch.__annotations__ = {"rows": batch, "return": BatchPrediction}
    ident = _ident(role)
    out: dict[str, Any] = {}
    for fn, suffix, doc in (
        (predict, "", f"{spec.registered_model}: one row → its {spec.task} prediction."),
        (predict_batch, "/batch", f"{spec.registered_model}: up to 1,000 rows in one request."),
    ):
        fn.__name__ = fn.__qualname__ = f"{fn.__name__}_{ident}"
        fn.__doc__ = doc
        out[fn.__name__] = bentoml.api(route=f"/v1/models/{spec.name}/predict{suffix}")(fn)
    return out


def lineage_apis(role: str, spec: LineageSpec, bento_tag: str) -> dict[str, Any]:
    """The lineage's API methods and its model as a BentoModel (so it ships in the Bento)."""
    import bentoml

    return {
        **lineage_methods(role, spec),
        f"model_{_ident(role)}": bentoml.models.BentoModel(bento_tag),
    }


def with_lineage_routes(
    lineages: dict[str, LineageSpec], entries: dict[str, Any]
) -> Callable[[type], type]:
    """A class decorator (applied before bentoml.service reads the class) that adds each
    declared lineage's model and routes, so one Bento serves every promoted model."""

    def add(cls: type) -> type:
        for role, spec in lineages.items():
            for name, member in lineage_apis(role, spec, entries[role].bento_tag).items():
                setattr(cls, name, member)
        return cls

    return add
