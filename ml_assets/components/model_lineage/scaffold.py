"""`dg scaffold defs ml_assets.components.ModelLineage <path>`: a lineage that runs as written.

It writes `defs.yaml` (pointing at a built-in demo generator, with the demo's schema) and a
`train.py` beside it; a user then swaps in their own data, schema and estimator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import BaseModel, Field

from ml_assets.components.model_lineage.demo import FEATURES


class ModelLineageScaffoldParams(BaseModel):
    task: Literal["regression", "classification"] = Field(
        default="regression", description="The demo task the skeleton starts from."
    )


TRAIN_PY = '''"""The train function of this lineage: return an unfitted scikit-learn estimator.

The lineage calls it with the arguments it names (any of categorical, numeric, features, seed,
task, and the keys of `trainer.params`), fits what it returns on the training split, exports
it to ONNX and validates the export. Keep a ColumnTransformer first so each feature is
selected by name (the ONNX graph has one input per feature).
"""

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import {estimator}
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def make_model(categorical: list[str], numeric: list[str], seed: int, max_iter: int = 100):
    features = ColumnTransformer(
        [
            ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("numeric", "passthrough", numeric),
        ]
    )
    model = {estimator}(max_iter=max_iter, random_state=seed)
    return Pipeline([("features", features), ("model", model)])
'''

DEMO = {
    "regression": ("regression_rows", "price_k", "mae", "HistGradientBoostingRegressor", 0.05),
    "classification": (
        "classification_rows",
        "sold_fast",
        "roc_auc",
        "HistGradientBoostingClassifier",
        1e-4,
    ),
}


def _lineage_name(path: Path) -> str:
    name = re.sub(r"\W+", "_", path.name).strip("_") or "my_model"
    return name if not name[0].isdigit() else f"m_{name}"


def defs_yaml(type_name: str, name: str, task: str) -> str:
    """The skeleton's YAML: every field spelled out, with what to change."""
    generator, label, metric, _, parity = DEMO[task]
    features = "\n".join(f"    - {json.dumps(f)}" for f in FEATURES)
    return f"""type: {type_name}

attributes:
  name: {name}                       # asset keys {name}/raw_data ... and the Dagster group
  registered_model: {name.replace("_", "-")}    # the MLflow registered model
  task: {task}                    # classification (0/1 label) | regression
  label: {label}
  # One entry per model input: float | int (min/max) or category (categories).
  features:
{features}
  dataset:
    # module:function(rows, seed) -> DataFrame; or `path: <csv/parquet>` instead.
    # A leading dot is relative to this folder, e.g. `.generator:make_rows`.
    generator: ml_assets.components.model_lineage.demo:{generator}
    rows: 5000
    seed: 7
    id_column: row_id
    min_rows: 500
  split:
    valid_fraction: 0.15
    test_fraction: 0.15
    seed: 7
  trainer:
    function: .train:make_model
    params:
      max_iter: 100
    seed: 7
  metrics:
    primary: {metric}
  export_validation:
    max_quality_delta: 0.01
    max_output_diff: {parity}
    max_latency_regression: 0.05
  promotion_margin: 0.01
"""


class ModelLineageScaffolder(dg.Scaffolder[ModelLineageScaffoldParams]):
    """Writes a defs.yaml and a train.py that materialize as they are."""

    @classmethod
    def get_scaffold_params(cls) -> type[ModelLineageScaffoldParams]:
        return ModelLineageScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[ModelLineageScaffoldParams]) -> None:
        task = request.params.task if request.params else "regression"
        if request.scaffold_format != "yaml":
            raise ValueError("ModelLineage scaffolds as YAML only: use --format yaml")
        folder = request.target_path.parent if request.append else request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        text = defs_yaml(request.type_name, _lineage_name(folder), task)
        if request.append:
            with open(request.target_path, "a", encoding="utf-8") as fh:
                fh.write("---\n" + text)
        else:
            (folder / "defs.yaml").write_text(text, encoding="utf-8")
        train = folder / "train.py"
        if not train.exists():
            train.write_text(TRAIN_PY.format(estimator=DEMO[task][3]), encoding="utf-8")
