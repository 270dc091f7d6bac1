"""The parts of a `ModelLineage` declaration: its features, data, split, trainer, metrics,
export checks and card (each a typed, described Resolvable model), and what a lineage plan
reads of a declaration (`DeclaredLineage`), so the plan never needs the component class.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol

import dagster as dg
from pydantic import Field, model_validator

from ml_assets.platform.lineage_spec import FeatureSpec, LineageSpec, Task

FUNCTION = re.compile(r"^\.*[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def about(text: str) -> dg.Resolver:
    """A field's description, as the JSON schema (and `dg utils inspect-component`) show it."""
    return dg.Resolver.default(description=text)


def at_least(model: dg.Model, low: float, *fields: str, strict: bool = False) -> None:
    """Bounds checked here, not with Field(gt=...): Resolvable refuses constrained types."""
    for f in fields:
        value = getattr(model, f)
        if value is not None and (value <= low if strict else value < low):
            raise ValueError(f"{f} must be {'>' if strict else '>='} {low}, got {value}")


class Feature(dg.Model, dg.Resolvable):
    """One input column of the model."""

    name: Annotated[str, about("Column name in the data and input name in the ONNX graph.")]
    type: Annotated[
        Literal["float", "int", "category"],
        about("float or int (fed to ONNX as float32), or category (fed as a string)."),
    ]
    min: Annotated[float | None, about("Smallest valid value (numeric only).")] = None
    max: Annotated[float | None, about("Largest valid value (numeric only).")] = None
    categories: Annotated[
        list[str] | None, about("Every valid value (category only; required there).")
    ] = None
    description: Annotated[str, about("What the column means, for people.")] = ""
    sensitive: Annotated[
        bool, about("The inference log stores the value's sha256, never the value.")
    ] = False

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError(f"feature {self.name!r}: a category needs its `categories`")
            if self.min is not None or self.max is not None:
                raise ValueError(f"feature {self.name!r}: min/max are for numeric features")
        elif self.categories:
            raise ValueError(f"feature {self.name!r}: `categories` is for category features")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} > max {self.max}")
        return self

    def spec(self) -> FeatureSpec:
        return FeatureSpec(
            name=self.name,
            kind=self.type,
            min=self.min,
            max=self.max,
            categories=tuple(self.categories or ()),
            description=self.description,
            sensitive=self.sensitive,
        )


class Dataset(dg.Model, dg.Resolvable):
    """Where the raw data comes from: a generator function, or a CSV/Parquet file."""

    generator: Annotated[
        str | None,
        about(
            "`module:function` called as function(rows, seed) -> pandas DataFrame; a "
            "leading dot (`.generator:make_rows`) is relative to this defs.yaml's folder."
        ),
    ] = None
    path: Annotated[
        str | None,
        about("A CSV or Parquet file to ingest (e.g. `{{ context.project_root }}/data.csv`)."),
    ] = None
    rows: Annotated[int, about("Rows the generator makes.")] = 20_000
    seed: Annotated[int, about("Generator seed; a new seed makes a new dataset.")] = 7
    id_column: Annotated[
        str | None, about("A unique row id: checked unique, and used to order splits.")
    ] = None
    min_rows: Annotated[int, about("Expectation: at least this many rows.")] = 1_000
    label_rate: Annotated[
        list[float] | None,
        about(
            "Expectation (classification): the positive rate lies in [min, max], e.g. "
            "[0.001, 0.2]; outside it a file is mislabelled or not this dataset."
        ),
    ] = None

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        at_least(self, 1, "rows", "min_rows")
        if self.label_rate is not None:
            lo_hi = self.label_rate
            if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
                raise ValueError(
                    f"dataset.label_rate {lo_hi}: expected [min, max] with 0 <= min <= max <= 1"
                )
        if (self.generator is None) == (self.path is None):
            raise ValueError("dataset: set exactly one of `generator` and `path`")
        if self.generator is not None and not FUNCTION.match(self.generator):
            raise ValueError(f"dataset.generator {self.generator!r}: expected module:function")
        return self


class Split(dg.Model, dg.Resolvable):
    """The deterministic train/valid/test split (stratified for classification)."""

    valid_fraction: Annotated[float, about("Share of rows: valid.")] = 0.15
    test_fraction: Annotated[float, about("Share of rows: test.")] = 0.15
    seed: Annotated[int, about("Seed of the split.")] = 7

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Split:
        at_least(self, 0, "valid_fraction", "test_fraction", strict=True)
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("split: valid_fraction + test_fraction must leave >10% to train")
        return self


class Trainer(dg.Model, dg.Resolvable):
    """The train function: returns an unfitted scikit-learn estimator or Pipeline."""

    function: Annotated[
        str,
        about(
            "`module:function` (leading dot: relative to this folder). It may take any "
            "of `categorical`, `numeric` (feature name lists), `features` (FeatureSpecs), `seed` "
            "and `task`, plus the keys of `params`; the lineage fits what it returns. With "
            "category features, start the Pipeline with a ColumnTransformer that encodes them."
        ),
    ]
    params: Annotated[
        dict[str, Any], about("Keyword arguments for the function (logged to MLflow).")
    ] = Field(default_factory=dict)
    seed: Annotated[int, about("Passed as `seed`: the estimator's random_state.")] = 7
    threads: Annotated[
        int | None,
        about(
            "OpenMP/BLAS threads while fitting and predicting natively (None: all). "
            "One avoids oversubscription on a small shared machine."
        ),
    ] = 1

    @model_validator(mode="after")
    def _function_path(self) -> Trainer:
        at_least(self, 1, "threads")
        if not FUNCTION.match(self.function):
            raise ValueError(f"trainer.function {self.function!r}: expected module:function")
        return self


class Metrics(dg.Model, dg.Resolvable):
    """How the model is judged."""

    primary: Annotated[
        str,
        about(
            "classification: roc_auc | pr_auc; regression: mae | rmse. The promotion "
            "gate compares candidate and champion on it."
        ),
    ]
    max_relative_delta: Annotated[
        dict[str, float],
        about(
            "Per metric, the relative ONNX-vs-native change the quality_delta check "
            "allows (metrics not listed use export_validation.max_quality_delta)."
        ),
    ] = Field(default_factory=dict)


class ExportValidation(dg.Model, dg.Resolvable):
    """Thresholds of the blocking checks on the export validation report."""

    max_quality_delta: Annotated[
        float, about("Default max relative metric change, ONNX vs native.")
    ] = 0.02
    max_output_diff: Annotated[
        float, about("output_parity: max |native - ONNX| on any test row.")
    ] = 1e-4
    max_latency_regression: Annotated[
        float | None,
        about(
            "latency: ONNX single-row p95 at most this much slower than native "
            "(null: measured and reported, not gated)."
        ),
    ] = 0.05
    latency_rows: Annotated[int, about("Test rows timed one at a time.")] = 300
    warmup_rows: Annotated[int, about("Untimed calls before timing.")] = 30

    @model_validator(mode="after")
    def _bounds(self) -> ExportValidation:
        at_least(self, 0, "max_quality_delta", "max_output_diff", "warmup_rows")
        at_least(self, 10, "latency_rows")
        return self


class Card(dg.Model, dg.Resolvable):
    """What a person reads first on the model card: who owns it, what it is and is not for."""

    owner: Annotated[str | None, about("The team or person who answers for the model.")] = None
    purpose: Annotated[str | None, about("What the model is for, in a sentence.")] = None
    intended_use: Annotated[
        str | None, about("Who may use its outputs, and for which decisions.")
    ] = None
    limitations: Annotated[
        list[str], about("What it must not be used for, and where it is known to be weak.")
    ] = Field(default_factory=list)
    license: Annotated[
        str | None, about("The license of the model and its outputs (an SPDX id, say).")
    ] = None


class DeclaredLineage(Protocol):
    """What a lineage plan (model_lineage/resolve.py) reads of its declaration: a
    `ModelLineage`'s fields."""

    name: str
    task: Task
    label: str
    features: list[Feature]
    dataset: Dataset
    split: Split
    trainer: Trainer
    metrics: Metrics
    export_validation: ExportValidation

    def spec(self) -> LineageSpec: ...
