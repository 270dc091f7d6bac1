"""`ModelLineage`: a supervised tabular model declared in YAML, built into the platform's chain.

    raw_data (+ blocking `expectations`) -> splits -> model (MLflow run + registered version)
      -> onnx (+ provenance.json) -> export_validation_report (+ blocking checks)

Every asset is keyed `[<name>, <stage>]` in group `<name>`, stores its bytes in the content
store and takes the sha256 of those bytes as its data version. The lineage's `LineageSpec`
(`ModelLineage.spec`) goes into the `Catalog` the defs folder's loader builds
(ml_assets/components/defs_folder.py), which is how the promotion gate, the sensors and the
bundle learn about it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import dagster as dg
from pydantic import Field, model_validator

from ml_assets.components.model_lineage.assets import build_lineage
from ml_assets.components.model_lineage.fields import (
    Card,
    Dataset,
    ExportValidation,
    Feature,
    Metrics,
    Split,
    Trainer,
    at_least,
)
from ml_assets.components.model_lineage.monitoring import Monitoring
from ml_assets.components.model_lineage.resolve import resolve_plan
from ml_assets.components.model_lineage.scaffold import ModelLineageScaffolder
from ml_assets.components.model_lineage.score_routes import ScoreRoutes
from ml_assets.monitoring.drift_asset import drift_asset
from ml_assets.monitoring.retention_asset import retention_asset
from ml_assets.platform.lineage_spec import LineageSpec
from ml_assets.tabular.model import HIGHER_IS_BETTER, TASK_METRICS

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _about(text: str) -> dg.Resolver:
    """A field's description, as the JSON schema (and `dg utils inspect-component`) show it."""
    return dg.Resolver.default(description=text)


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
        at_least(self, 0, "promotion_margin")
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
        # The day's served traffic against this lineage's training split, and the log cut to
        # its retention (both downstream of the serving bundle): ml_assets/monitoring/.
        monitoring = dg.Definitions(assets=[drift_asset(plan.spec), retention_asset(plan.spec)])
        return dg.Definitions.merge(build_lineage(plan), monitoring)

    def definitions(self) -> dg.Definitions:
        """The lineage's Definitions outside a defs folder (absolute function paths only)."""
        return dg.build_defs_for_component(self)
