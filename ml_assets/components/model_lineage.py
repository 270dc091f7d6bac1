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
from typing import Annotated, Any, Literal

import dagster as dg
from pydantic import Field, model_validator

from ml_assets.components.lineage_assets import build_lineage
from ml_assets.components.monitoring import Monitoring
from ml_assets.components.resolve import resolve_plan
from ml_assets.components.scaffold import ModelLineageScaffolder
from ml_assets.components.score_routes import ScoreRoutes
from ml_assets.core import lineage_spec
from ml_assets.core.lineage_spec import FeatureSpec, LineageSpec
from ml_assets.core.tabular_model import HIGHER_IS_BETTER, TASK_METRICS
from ml_assets.monitoring.drift_asset import drift_asset

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FUNCTION = re.compile(r"^\.*[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _about(text: str) -> dg.Resolver:
    """A field's description, as the JSON schema (and `dg utils inspect-component`) show it."""
    return dg.Resolver.default(description=text)


def _at_least(model: dg.Model, low: float, *fields: str, strict: bool = False) -> None:
    """Bounds checked here, not with Field(gt=...): Resolvable refuses constrained types."""
    for f in fields:
        value = getattr(model, f)
        if value is not None and (value <= low if strict else value < low):
            raise ValueError(f"{f} must be {'>' if strict else '>='} {low}, got {value}")


class Feature(dg.Model, dg.Resolvable):
    """One input column of the model."""

    name: Annotated[str, _about("Column name in the data and input name in the ONNX graph.")]
    type: Annotated[
        Literal["float", "int", "category"],
        _about("float or int (fed to ONNX as float32), or category (fed as a string)."),
    ]
    min: Annotated[float | None, _about("Smallest valid value (numeric only).")] = None
    max: Annotated[float | None, _about("Largest valid value (numeric only).")] = None
    categories: Annotated[
        list[str] | None, _about("Every valid value (category only; required there).")
    ] = None
    description: Annotated[str, _about("What the column means, for people.")] = ""
    sensitive: Annotated[
        bool, _about("The inference log stores the value's sha256, never the value.")
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
        _about(
            "`module:function` called as function(rows, seed) -> pandas DataFrame; a "
            "leading dot (`.generator:make_rows`) is relative to this defs.yaml's folder."
        ),
    ] = None
    path: Annotated[
        str | None,
        _about("A CSV or Parquet file to ingest (e.g. `{{ context.project_root }}/data.csv`)."),
    ] = None
    rows: Annotated[int, _about("Rows the generator makes.")] = 20_000
    seed: Annotated[int, _about("Generator seed; a new seed makes a new dataset.")] = 7
    id_column: Annotated[
        str | None, _about("A unique row id: checked unique, and used to order splits.")
    ] = None
    min_rows: Annotated[int, _about("Expectation: at least this many rows.")] = 1_000
    label_rate: Annotated[
        list[float] | None,
        _about(
            "Expectation (classification): the positive rate lies in [min, max], e.g. "
            "[0.001, 0.2]; outside it a file is mislabelled or not this dataset."
        ),
    ] = None

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        _at_least(self, 1, "rows", "min_rows")
        if self.label_rate is not None:
            lo_hi = self.label_rate
            if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
                raise ValueError(
                    f"dataset.label_rate {lo_hi}: expected [min, max] with 0 <= min <= max <= 1"
                )
        if (self.generator is None) == (self.path is None):
            raise ValueError("dataset: set exactly one of `generator` and `path`")
        if self.generator is not None and not _FUNCTION.match(self.generator):
            raise ValueError(f"dataset.generator {self.generator!r}: expected module:function")
        return self


class Split(dg.Model, dg.Resolvable):
    """The deterministic train/valid/test split (stratified for classification)."""

    valid_fraction: Annotated[float, _about("Share of rows: valid.")] = 0.15
    test_fraction: Annotated[float, _about("Share of rows: test.")] = 0.15
    seed: Annotated[int, _about("Seed of the split.")] = 7

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Split:
        _at_least(self, 0, "valid_fraction", "test_fraction", strict=True)
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("split: valid_fraction + test_fraction must leave >10% to train")
        return self


class Trainer(dg.Model, dg.Resolvable):
    """The train function: returns an unfitted scikit-learn estimator or Pipeline."""

    function: Annotated[
        str,
        _about(
            "`module:function` (leading dot: relative to this folder). It may take any "
            "of `categorical`, `numeric` (feature name lists), `features` (FeatureSpecs), `seed` "
            "and `task`, plus the keys of `params`; the lineage fits what it returns. With "
            "category features, start the Pipeline with a ColumnTransformer that encodes them."
        ),
    ]
    params: Annotated[
        dict[str, Any], _about("Keyword arguments for the function (logged to MLflow).")
    ] = Field(default_factory=dict)
    seed: Annotated[int, _about("Passed as `seed`: the estimator's random_state.")] = 7
    threads: Annotated[
        int | None,
        _about(
            "OpenMP/BLAS threads while fitting and predicting natively (None: all). "
            "One avoids oversubscription on a small shared machine."
        ),
    ] = 1

    @model_validator(mode="after")
    def _function_path(self) -> Trainer:
        _at_least(self, 1, "threads")
        if not _FUNCTION.match(self.function):
            raise ValueError(f"trainer.function {self.function!r}: expected module:function")
        return self


class Metrics(dg.Model, dg.Resolvable):
    """How the model is judged."""

    primary: Annotated[
        str,
        _about(
            "classification: roc_auc | pr_auc; regression: mae | rmse. The promotion "
            "gate compares candidate and champion on it."
        ),
    ]
    max_relative_delta: Annotated[
        dict[str, float],
        _about(
            "Per metric, the relative ONNX-vs-native change the quality_delta check "
            "allows (metrics not listed use export_validation.max_quality_delta)."
        ),
    ] = Field(default_factory=dict)


class ExportValidation(dg.Model, dg.Resolvable):
    """Thresholds of the blocking checks on the export validation report."""

    max_quality_delta: Annotated[
        float, _about("Default max relative metric change, ONNX vs native.")
    ] = 0.02
    max_output_diff: Annotated[
        float, _about("output_parity: max |native - ONNX| on any test row.")
    ] = 1e-4
    max_latency_regression: Annotated[
        float | None,
        _about(
            "latency: ONNX single-row p95 at most this much slower than native "
            "(null: measured and reported, not gated)."
        ),
    ] = 0.05
    latency_rows: Annotated[int, _about("Test rows timed one at a time.")] = 300
    warmup_rows: Annotated[int, _about("Untimed calls before timing.")] = 30

    @model_validator(mode="after")
    def _bounds(self) -> ExportValidation:
        _at_least(self, 0, "max_quality_delta", "max_output_diff", "warmup_rows")
        _at_least(self, 10, "latency_rows")
        return self


class Card(dg.Model, dg.Resolvable):
    """What a person reads first on the model card: who owns it, what it is and is not for."""

    owner: Annotated[str | None, _about("The team or person who answers for the model.")] = None
    purpose: Annotated[str | None, _about("What the model is for, in a sentence.")] = None
    intended_use: Annotated[
        str | None, _about("Who may use its outputs, and for which decisions.")
    ] = None
    limitations: Annotated[
        list[str], _about("What it must not be used for, and where it is known to be weak.")
    ] = Field(default_factory=list)
    license: Annotated[
        str | None, _about("The license of the model and its outputs (an SPDX id, say).")
    ] = None


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

    name: Annotated[str, _about("The lineage: asset key prefix and group, e.g. `curves`.")]
    registered_model: Annotated[str, _about("The MLflow registered model, e.g. `my-model`.")]
    description: Annotated[str, _about("What the model predicts, for people.")] = ""
    task: Annotated[
        Literal["classification", "regression"],
        _about("classification (binary 0/1 label; serves P(class 1)) or regression."),
    ]
    label: Annotated[str, _about("The target column.")]
    features: Annotated[list[Feature], _about("The model's inputs, in order.")]
    dataset: Annotated[Dataset, _about("The raw data's source.")]
    split: Annotated[Split, _about("The train/valid/test split.")] = Field(default_factory=Split)
    trainer: Annotated[Trainer, _about("The function that builds the estimator.")]
    metrics: Annotated[Metrics, _about("The primary metric and allowed deltas.")]
    export_validation: Annotated[
        ExportValidation, _about("Blocking checks of the ONNX export.")
    ] = Field(default_factory=ExportValidation)
    promotion_margin: Annotated[
        float,
        _about(
            "How much worse than the champion (relative, on the primary metric) a "
            "candidate may be and still be promoted."
        ),
    ] = 0.01
    card: Annotated[
        Card,
        _about(
            "The model card's own words (owner, purpose, intended_use, limitations, license); "
            "everything else on the card comes from the platform's records."
        ),
    ] = Field(default_factory=Card)
    score_routes: Annotated[
        ScoreRoutes | None,
        _about(
            "Also serve this model at POST /v1/score and /v1/score/batch: this lineage's "
            "features in; the probability and the declared decision at its threshold out "
            "(classification only). At most one lineage of a code location may set it."
        ),
    ] = None
    monitoring: Annotated[
        Monitoring, _about("The inference log's sampling and retention, drift thresholds.")
    ] = Field(default_factory=Monitoring)

    @model_validator(mode="after")
    def _consistent(self) -> ModelLineage:
        _at_least(self, 0, "promotion_margin")
        if self.dataset.label_rate is not None and self.task != "classification":
            raise ValueError("dataset.label_rate is for classification lineages")
        if self.score_routes and self.task != "classification":
            raise ValueError(
                "score_routes is for classification lineages: /v1/score answers a probability "
                "and a verdict (a regression model is served at /v1/models/<name>/predict)"
            )
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
            id_column=self.dataset.id_column,
            min_rows=self.dataset.min_rows,
            label_rate=None if self.dataset.label_rate is None else tuple(self.dataset.label_rate),
            score_routes=None if self.score_routes is None else self.score_routes.spec(),
            card={**self.card.model_dump(), "description": self.description},
            monitoring=self.monitoring.spec(),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        plan = resolve_plan(self, context)
        lineage_spec.register(plan.spec)
        # The day's served traffic against this lineage's training split (downstream of the
        # serving bundle): ml_assets/monitoring/drift_asset.py.
        drift = dg.Definitions(assets=[drift_asset(plan.spec)])
        return dg.Definitions.merge(build_lineage(plan), drift)

    def definitions(self) -> dg.Definitions:
        """The lineage's Definitions outside a defs folder (absolute function paths only)."""
        return dg.build_defs_for_component(self)
