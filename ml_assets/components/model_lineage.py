"""`ModelLineage`: a supervised tabular model declared in YAML, built into the platform's chain.

    raw_data (+ blocking `expectations`) -> splits -> model (MLflow run + registered version)
      -> onnx (+ provenance.json) -> export_validation_report (+ blocking checks)

Every asset is keyed `[<name>, <stage>]` in group `<name>`, stores its bytes in the content
store and takes the sha256 of those bytes as its data version. The lineage's `LineageSpec` is
registered in `ml_assets.core.lineage_spec`, which is how the promotion gate, the sensors and
the bundle learn about it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import dagster as dg
from pydantic import Field, model_validator

from ml_assets.components.lineage_assets import build_lineage
from ml_assets.components.resolve import resolve_plan
from ml_assets.components.scaffold import ModelLineageScaffolder
from ml_assets.core import lineage_spec
from ml_assets.core.lineage_spec import FeatureSpec, LineageSpec
from ml_assets.core.tabular_model import HIGHER_IS_BETTER, TASK_METRICS

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FUNCTION = re.compile(r"^\.*[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _at_least(model: dg.Model, low: float, *fields: str, strict: bool = False) -> None:
    """Bounds checked here, not with Field(gt=...): Resolvable refuses constrained types."""
    for f in fields:
        value = getattr(model, f)
        if value is not None and (value <= low if strict else value < low):
            raise ValueError(f"{f} must be {'>' if strict else '>='} {low}, got {value}")


class Feature(dg.Model):
    """One input column of the model."""

    name: str = Field(description="Column name in the data and input name in the ONNX graph.")
    type: Literal["float", "int", "category"] = Field(
        description="float or int (fed to ONNX as float32), or category (fed as a string)."
    )
    min: float | None = Field(default=None, description="Smallest valid value (numeric only).")
    max: float | None = Field(default=None, description="Largest valid value (numeric only).")
    categories: list[str] | None = Field(
        default=None, description="Every valid value (category only; required there)."
    )
    description: str = Field(default="", description="What the column means, for people.")

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
        )


class Dataset(dg.Model):
    """Where the raw data comes from: a generator function, or a CSV/Parquet file."""

    generator: str | None = Field(
        default=None,
        description="`module:function` called as function(rows, seed) -> pandas DataFrame; a "
        "leading dot (`.generator:make_rows`) is relative to this defs.yaml's folder.",
    )
    path: str | None = Field(
        default=None,
        description="A CSV or Parquet file to ingest (e.g. `{{ context.project_root }}/data.csv`).",
    )
    rows: int = Field(default=20_000, description="Rows the generator makes.")
    seed: int = Field(default=7, description="Generator seed; a new seed makes a new dataset.")
    id_column: str | None = Field(
        default=None, description="A unique row id: checked unique, and used to order splits."
    )
    min_rows: int = Field(default=1_000, description="Expectation: at least this many rows.")

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        _at_least(self, 1, "rows", "min_rows")
        if (self.generator is None) == (self.path is None):
            raise ValueError("dataset: set exactly one of `generator` and `path`")
        if self.generator is not None and not _FUNCTION.match(self.generator):
            raise ValueError(f"dataset.generator {self.generator!r}: expected module:function")
        return self


class Split(dg.Model):
    """The deterministic train/valid/test split (stratified for classification)."""

    valid_fraction: float = Field(default=0.15, description="Share of rows: valid.")
    test_fraction: float = Field(default=0.15, description="Share of rows: test.")
    seed: int = Field(default=7, description="Seed of the split.")

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Split:
        _at_least(self, 0, "valid_fraction", "test_fraction", strict=True)
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("split: valid_fraction + test_fraction must leave >10% to train")
        return self


class Trainer(dg.Model):
    """The train function: returns an unfitted scikit-learn estimator or Pipeline."""

    function: str = Field(
        description="`module:function` (leading dot: relative to this folder). It may take any "
        "of `categorical`, `numeric` (feature name lists), `features` (FeatureSpecs), `seed` "
        "and `task`, plus the keys of `params`; the lineage fits what it returns."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the function (logged to MLflow)."
    )
    seed: int = Field(default=7, description="Passed as `seed`: the estimator's random_state.")
    threads: int | None = Field(
        default=1,
        description="OpenMP/BLAS threads while fitting and predicting natively (None: all). "
        "One avoids oversubscription on a small shared machine.",
    )

    @model_validator(mode="after")
    def _function_path(self) -> Trainer:
        _at_least(self, 1, "threads")
        if not _FUNCTION.match(self.function):
            raise ValueError(f"trainer.function {self.function!r}: expected module:function")
        return self


class Metrics(dg.Model):
    """How the model is judged."""

    primary: str = Field(
        description="classification: roc_auc | pr_auc; regression: mae | rmse. The promotion "
        "gate compares candidate and champion on it."
    )
    max_relative_delta: dict[str, float] = Field(
        default_factory=dict,
        description="Per metric, the relative ONNX-vs-native change the quality_delta check "
        "allows (metrics not listed use export_validation.max_quality_delta).",
    )


class ExportValidation(dg.Model):
    """Thresholds of the blocking checks on the export validation report."""

    max_quality_delta: float = Field(
        default=0.02, description="Default max relative metric change, ONNX vs native."
    )
    max_output_diff: float = Field(
        default=1e-4, description="output_parity: max |native - ONNX| on any test row."
    )
    max_latency_regression: float | None = Field(
        default=0.05,
        description="latency: ONNX single-row p95 at most this much slower than native "
        "(null: measured and reported, not gated).",
    )
    latency_rows: int = Field(default=300, description="Test rows timed one at a time.")
    warmup_rows: int = Field(default=30, description="Untimed calls before timing.")

    @model_validator(mode="after")
    def _bounds(self) -> ExportValidation:
        _at_least(self, 0, "max_quality_delta", "max_output_diff", "warmup_rows")
        _at_least(self, 10, "latency_rows")
        return self


@dg.scaffold_with(ModelLineageScaffolder)
class ModelLineage(dg.Component, dg.Model, dg.Resolvable):
    """A supervised tabular model: data -> expectations -> splits -> model -> ONNX -> report.

    In YAML (a defs.yaml in the defs folder, `type: ml_assets.components.ModelLineage`), or
    as a plain Python object::

        lineage = ModelLineage(
            name="churn", registered_model="churn-classifier", task="classification",
            label="churned", features=[Feature(name="tenure", type="int", min=0)],
            dataset=Dataset(generator="my_pkg.data:make_rows", rows=10_000),
            trainer=Trainer(function="my_pkg.train:make_model"),
            metrics=Metrics(primary="pr_auc"),
        )
        defs = dg.build_defs_for_component(lineage)  # or lineage.definitions()

    (a leading-dot function path needs a defs folder; from Python, use absolute paths).
    """

    name: str = Field(description="The lineage: asset key prefix and group, e.g. `curves`.")
    registered_model: str = Field(description="The MLflow registered model, e.g. `my-model`.")
    description: str = Field(default="", description="What the model predicts, for people.")
    task: Literal["classification", "regression"] = Field(
        description="classification (binary 0/1 label; serves P(class 1)) or regression."
    )
    label: str = Field(description="The target column.")
    features: list[Feature] = Field(description="The model's inputs, in order.")
    dataset: Dataset = Field(description="The raw data's source.")
    split: Split = Field(default_factory=Split, description="The train/valid/test split.")
    trainer: Trainer = Field(description="The function that builds the estimator.")
    metrics: Metrics = Field(description="The primary metric and allowed deltas.")
    export_validation: ExportValidation = Field(
        default_factory=ExportValidation, description="Blocking checks of the ONNX export."
    )
    promotion_margin: float = Field(
        default=0.01,
        description="How much worse than the champion (relative, on the primary metric) a "
        "candidate may be and still be promoted.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelLineage:
        _at_least(self, 0, "promotion_margin")
        if not self.features:
            raise ValueError("features: declare at least one")
        if not _NAME.match(self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits and underscores")
        if not _MODEL_NAME.match(self.registered_model):
            raise ValueError(f"registered_model {self.registered_model!r}: letters, digits, ._-")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features declared twice: {dupes}")
        reserved = {self.label, self.dataset.id_column, "split"} & set(names)
        if reserved:
            raise ValueError(f"features {sorted(reserved)} clash with the label/id/split column")
        allowed = TASK_METRICS[self.task]
        if self.metrics.primary not in allowed:
            raise ValueError(
                f"metrics.primary {self.metrics.primary!r} is not a {self.task} metric {allowed}"
            )
        unknown = sorted(set(self.metrics.max_relative_delta) - set(allowed))
        if unknown:
            raise ValueError(f"metrics.max_relative_delta: {unknown} not in {allowed}")
        return self

    def thresholds(self) -> dict[str, float]:
        """The report's thresholds, flat: what the blocking checks compare against."""
        ev = self.export_validation
        out = {
            f"max_relative_delta_{m}": self.metrics.max_relative_delta.get(m, ev.max_quality_delta)
            for m in TASK_METRICS[self.task]
        }
        out["max_output_diff"] = ev.max_output_diff
        if ev.max_latency_regression is not None:
            out["max_latency_regression"] = ev.max_latency_regression
        return out

    def report_checks(self) -> tuple[str, ...]:
        gated = ("quality_delta", "output_parity")
        if self.export_validation.max_latency_regression is None:
            return gated
        return (*gated, "latency")

    def spec(self) -> LineageSpec:
        """What the gate, the sensors and the bundle know about this lineage."""
        return LineageSpec(
            name=self.name,
            registered_model=self.registered_model,
            task=self.task,
            label=self.label,
            features=tuple(f.spec() for f in self.features),
            primary_metric=self.metrics.primary,
            higher_is_better=HIGHER_IS_BETTER[self.metrics.primary],
            promotion_margin=self.promotion_margin,
            report_checks=self.report_checks(),
            thresholds=self.thresholds(),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        plan = resolve_plan(self, context)
        lineage_spec.register(plan.spec)
        return build_lineage(plan)

    def definitions(self) -> dg.Definitions:
        """The lineage's Definitions outside a defs folder (absolute function paths only)."""
        return dg.build_defs_for_component(self)
