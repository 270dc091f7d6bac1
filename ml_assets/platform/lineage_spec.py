"""What the platform needs to know about a declared model lineage, without Dagster.

A `ModelLineage` component (ml_assets/components/) turns its YAML into a `LineageSpec`; the
declared ones are gathered into the `Catalog` (ml_assets/platform/catalog.py) that the gate, the
promotion sensor and the serving bundle are given, so no platform module names a model. The
spec travels one way: YAML -> component -> catalog -> assets (metadata) -> registry version
(tags) -> bundle (manifest) -> service (request schema).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ml_assets.platform.score_route import ScoreRoute

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input column: its type and the values the model was trained on."""

    name: str
    kind: Literal["float", "int", "category"]
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    description: str = ""
    # The inference log stores this feature's sha256, never its value.
    sensitive: bool = False


@dataclass(frozen=True)
class MonitoringSpec:
    """How the service samples the lineage's traffic, and what the nightly calls drift."""

    sample_rate: float = 0.1
    retention_days: int = 30
    psi_warn: float = 0.1
    psi_fail: float = 0.25
    min_rows: int = 200


@dataclass(frozen=True)
class LineageSpec:
    """A supervised tabular model's chain: data -> splits -> model -> ONNX -> report -> gate."""

    name: str  # the lineage, also the asset key prefix: "<name>/raw_data", ...
    registered_model: str  # the MLflow registered model
    task: Task
    label: str
    features: tuple[FeatureSpec, ...]
    primary_metric: str  # a key of the report's metrics, e.g. "pr_auc" or "mae"
    higher_is_better: bool
    promotion_margin: float = 0.01
    # Blocking checks on the export validation report, each must pass to serve.
    report_checks: tuple[str, ...] = ("quality_delta", "output_parity", "latency")
    expectations_check: str = "expectations"
    thresholds: dict[str, float] = field(default_factory=dict)
    # The raw data's declared id column and row floor: its expectations suite needs them.
    id_column: str | None = None
    min_rows: int = 1
    # Expectation (classification): the positive rate's bounds, or None.
    label_rate: tuple[float, float] | None = None
    # Served at /v1/score and /v1/score/batch too, with this decision (at most one lineage).
    score_routes: ScoreRoute | None = None
    # The model card's declared fields (owner, purpose, intended_use, limitations, license).
    card: dict[str, Any] = field(default_factory=dict)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)

    def asset(self, stage: str) -> str:
        """The user string of one stage's asset key (`raw_data`, `splits`, `model`, `onnx`,
        `export_validation_report`)."""
        return f"{self.name}/{stage}"

    def example_row(self) -> dict[str, Any]:
        """One input row inside the declared schema (each range's midpoint, each first
        category): what a smoke test or a load test sends to this model's routes."""
        row: dict[str, Any] = {}
        for f in self.features:
            if f.kind == "category":
                row[f.name] = f.categories[0] if f.categories else "example"
                continue
            lo = f.min if f.min is not None else (f.max if f.max is not None else 0.0)
            hi = f.max if f.max is not None else lo
            mid = (lo + hi) / 2
            row[f.name] = int(min(max(round(mid), lo), hi)) if f.kind == "int" else float(mid)
        return row

    def to_dict(self) -> dict[str, Any]:
        # Defaults of the monitoring fields are left out: a lineage that declares none keeps
        # the bytes (bundle manifests, registry artifacts) it had before they existed.
        out = asdict(self)
        for f in out["features"]:
            if not f["sensitive"]:
                del f["sensitive"]
        if self.monitoring == MonitoringSpec():
            del out["monitoring"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageSpec:
        feats = tuple(
            FeatureSpec(**{**f, "categories": tuple(f.get("categories") or ())})
            for f in data["features"]
        )
        return cls(
            **{
                **data,
                "features": feats,
                "report_checks": tuple(data.get("report_checks") or ()),
                "thresholds": dict(data.get("thresholds") or {}),
                "card": dict(data.get("card") or {}),
                "label_rate": tuple(data["label_rate"]) if data.get("label_rate") else None,
                "monitoring": MonitoringSpec(**(data.get("monitoring") or {})),
                "score_routes": ScoreRoute.from_json(data.get("score_routes")),
            }
        )
