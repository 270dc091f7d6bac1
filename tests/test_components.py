"""The ModelLineage component: the shipped curves lineage, dg's view of it, scaffolding, and a
new lineage declared in a temporary defs folder, all materialized on real components."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    load_from_defs_folder,
    materialize,
)
from dagster.components.testing import create_defs_folder_sandbox
from pydantic import ValidationError

from ml_assets.components.defs_folder import catalog_of
from ml_assets.lineages.curves.generator import forward_curves
from ml_assets.platform.artifacts import ArtifactRef
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.hashing import sha256_file
from ml_assets.platform.validation_records import chain_of, model_evidence
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import ref_path
from ml_assets.tabular.expectations import validate_frame
from ml_assets.tabular.scorer import OnnxTabularScorer
from tests.conftest import REPO
from tests.helpers import (
    ALL_CHECKS,
    CATALOG,
    assets_of_lineage,
    checks_of,
    metadata_of,
)
from tests.helpers import CURVES_LINEAGE as CURVES
from tests.helpers import data_versions as versions_of

CURVES_ROWS = 5_000


def raw_config(name: str, **config: Any) -> dict[str, Any]:
    return {"ops": {f"{name}__raw_data": {"config": config}}}


@pytest.fixture(scope="module")
def curves_defs() -> Definitions:
    return load_from_defs_folder(path_within_project=REPO)


@pytest.fixture(scope="module")
def curves(
    curves_defs: Definitions,
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_resource: MlflowResource,
    dagster_instance: DagsterInstance,
):
    root = tmp_path_factory.mktemp("curves_artifacts")
    resources = local_resources(root, mlflow_resource)
    assets = assets_of_lineage(curves_defs, "curves")
    result = materialize(
        assets,
        resources=resources,
        instance=dagster_instance,
        run_config=raw_config("curves", rows=CURVES_ROWS),
    )
    return result, resources, assets


def test_curves_lineage_materializes_with_hashes_registry_and_checks(curves, dagster_instance):
    result, resources, _ = curves
    assert result.success
    versions = versions_of(result)
    assert set(versions) == set(CURVES)
    assert checks_of(result) == dict.fromkeys(ALL_CHECKS, True)
    for asset in CURVES:
        md = metadata_of(result, asset)
        assert md["sha256"] == versions[asset] == sha256_file(md["path"])
        assert md["code_version"].startswith(f"{asset}@1+")
        assert "scikit-learn" in md["environment"]["packages"]

    model_md = metadata_of(result, "curves/model")
    test = pd.read_parquet(metadata_of(result, "curves/splits")["path"]).query("split == 'test'")
    naive_mae = float(np.mean(np.abs(test["next_settlement"] - test["settle_lag1"])))
    assert model_md["test_mae"] < 0.7 * naive_mae  # the signal is learnable, not just lag-1
    assert model_md["test_rmse"] >= model_md["test_mae"]

    # What the promotion gate looks up, by data version, in Dagster's records.
    onnx_md = metadata_of(result, "curves/onnx")
    report = metadata_of(result, "curves/export_validation_report")
    name, version = "curve-forecaster", onnx_md["registered_model"].split(" v")[1]
    assert onnx_md["registered_model"] == f"{name} v{version}"
    assert report["upstream_data_versions"] == {
        "curves/splits": versions["curves/splits"],
        "curves/model": versions["curves/model"],
        "curves/onnx": versions["curves/onnx"],
    }
    assert [link["asset"] for link in report["lineage"]] == list(CURVES[:4])
    assert report["lineage"][0]["sha256"] == versions["curves/raw_data"]
    assert report["thresholds"] == {
        "max_relative_delta_mae": 0.005,
        "max_relative_delta_rmse": 0.005,
        "max_output_diff": 0.001,
        "max_latency_regression": 0.05,
    }
    assert report["native_mae"] == pytest.approx(model_md["test_mae"])
    assert isinstance(report["onnx_mae"], float)
    assert report["max_abs_output_diff"] <= 0.001

    client = resources["mlflow"].client
    mv = client.get_model_version(name, version)
    assert mv.tags["model_sha256"] == versions["curves/model"]
    assert mv.tags["onnx_sha256"] == versions["curves/onnx"]
    assert mv.tags["curves/raw_data_sha256"] == versions["curves/raw_data"]
    assert mv.tags["curves/splits_sha256"] == versions["curves/splits"]
    assert mv.tags["code_version"] == model_md["code_version"]
    assert mv.tags["export_validation"] == "passed"
    run = client.get_run(mv.run_id)
    assert run.data.params["seed"] == "11" and run.data.params["trainer.max_iter"] == "150"
    assert run.data.metrics["test_mae"] == pytest.approx(model_md["test_mae"])
    provenance = json.loads(
        Path(client.download_artifacts(mv.run_id, "provenance.json")).read_text()
    )
    assert provenance["artifact"]["sha256"] == versions["curves/onnx"]
    assert [link["asset"] for link in provenance["chain"]] == list(CURVES[:4])
    assert mv.tags["provenance_sha256"] == sha256_file(
        client.download_artifacts(mv.run_id, "provenance.json")
    )
    served = Path(client.download_artifacts(mv.run_id, "onnx/model.onnx")).read_bytes()
    scorer = OnnxTabularScorer(served, CATALOG.by_model(name).features, "regression")
    records = test.head(3).to_dict("records")
    assert scorer.predict_records(records).shape == (3,)

    # The gate's own reading of Dagster's records (verdicts by data version, not tags).
    evidence = model_evidence(
        DagsterRecords(dagster_instance),
        chain_of(CATALOG.by_model(name)),
        f"{name}@{version}",
        versions["curves/onnx"],
        provenance,
    )
    assert all(passed for _, passed, _ in evidence.gates), evidence.gates
    assert evidence.metric == pytest.approx(report["native_mae"])


def test_rematerializing_gives_byte_identical_data_versions(curves, dagster_instance):
    result, resources, assets = curves
    again = materialize(
        assets,
        resources=resources,
        instance=dagster_instance,
        run_config=raw_config("curves", rows=CURVES_ROWS),
    )
    assert again.success
    assert versions_of(again) == versions_of(result)
    assert checks_of(again) == dict.fromkeys(ALL_CHECKS, True)


def _doctored(onnx_bytes: bytes, shift: float) -> bytes:
    """The same graph with every prediction shifted: a tampered (or mis-exported) model."""
    model = onnx.load_from_string(onnx_bytes)
    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    (base,) = [a for a in node.attribute if a.name in ("base_values", "base_values_as_tensor")]
    if base.name == "base_values":
        base.floats[0] += shift
    else:
        values = onnx.numpy_helper.to_array(base.t) + shift
        base.t.CopyFrom(onnx.numpy_helper.from_array(values, base.t.name))
    return model.SerializeToString()


def test_a_doctored_onnx_fails_output_parity(curves, dagster_instance):
    result, resources, assets = curves
    store = resources["store"]
    path = ref_path(store.base_dir, "curves__onnx")
    original = path.read_text()
    good = ArtifactRef.from_json(original)
    bad_bytes = _doctored(good.read_verified(), shift=0.05)
    bad = store.content().put(
        good.asset,
        bad_bytes,
        ".onnx",
        code_version=good.code_version,
        lineage=good.lineage,
        extra=good.extra,
    )
    path.write_text(bad.to_json())
    try:
        doctored = materialize(
            assets,
            selection=[AssetKey(["curves", "export_validation_report"])],
            resources=resources,
            instance=dagster_instance,
            raise_on_error=False,  # a failed blocking check fails the step
        )
    finally:
        path.write_text(original)
    checks = checks_of(doctored)
    assert checks["output_parity"] is False
    report = metadata_of(doctored, "curves/export_validation_report")
    assert report["upstream_data_versions"]["curves/onnx"] == bad.sha256 != good.sha256
    assert report["max_abs_output_diff"] == pytest.approx(0.05, rel=1e-3)
    # The gate refuses these bytes twice over: never exported, and their report failed.
    evidence = model_evidence(
        DagsterRecords(dagster_instance),
        chain_of(CATALOG.by_model("curve-forecaster")),
        f"curve-forecaster@{good.extra['model_version']}",
        bad.sha256,
        None,
    )
    gates = {name: passed for name, passed, _ in evidence.gates}
    assert gates["onnx_export"] is False and gates["export_validation"] is False


def test_generated_expectations_reject_bad_frames(curves_defs: Definitions):
    spec = CATALOG.by_model("curve-forecaster")
    assert spec is not None
    good = forward_curves(300, seed=3)
    kwargs = {"label": spec.label, "task": spec.task, "id_column": "curve_point_id"}
    assert all(o.success for o in validate_frame(good, spec.features, **kwargs))
    bad = good.copy()
    bad["month"] = bad["month"].astype(str)  # wrong type
    bad.loc[0, "volatility"] = 7.5  # out of range
    bad.loc[1, "commodity"] = "uranium"  # unknown category
    bad.loc[2, "curve_point_id"] = bad.loc[3, "curve_point_id"]  # duplicate id
    bad = bad.drop(columns=["days_to_expiry"])
    failed = {
        (o.column, o.expectation)
        for o in validate_frame(bad, spec.features, **kwargs)
        if not o.success
    }
    assert {
        ("month", "expect_column_values_to_be_in_type_list"),
        ("volatility", "expect_column_values_to_be_between"),
        ("commodity", "expect_column_values_to_be_in_set"),
        ("curve_point_id", "expect_column_values_to_be_unique"),
        ("days_to_expiry", "expect_column_to_exist"),
    } <= failed


def test_a_bad_source_file_is_stopped_by_the_blocking_expectations(
    curves, tmp_path: Path, dagster_instance
):
    _, resources, assets = curves
    bad = forward_curves(2_000, seed=5)
    bad.loc[10, "commodity"] = "uranium"
    source = tmp_path / "curves.csv"
    bad.to_csv(source, index=False)
    result = materialize(
        assets,
        resources=resources,
        instance=dagster_instance,
        run_config=raw_config("curves", source_path=str(source)),
        raise_on_error=False,
    )
    assert checks_of(result) == {"expectations": False}
    assert set(versions_of(result)) == {"curves/raw_data"}  # nothing downstream ran
    assert metadata_of(result, "curves/raw_data")["source"] == str(source.resolve())


def test_each_lineage_example_row_is_inside_its_request_schema(curves_defs: Definitions):
    """The row the Bento's smoke check and the nightly load test send (LineageSpec.example_row)
    passes the request model served for that lineage, and /v1/score's for the fraud lineage."""
    from serving.schemas import transaction_model
    from serving.tabular import row_model

    for name in ("fraud", "curves"):
        spec = CATALOG.lineage(name)
        row = spec.example_row()
        assert set(row) == {f.name for f in spec.features}
        row_model(spec).model_validate(row)
    fraud = CATALOG.lineage("fraud")
    transaction_model(fraud).model_validate(fraud.example_row())
    with pytest.raises(ValidationError, match="merchant_category"):
        transaction_model(fraud).model_validate({**fraud.example_row(), "merchant_category": "x"})


NEW_LINEAGE_YAML = """
type: ml_assets.components.ModelLineage
attributes:
  name: loans
  registered_model: loan-default
  task: classification
  label: defaulted
  features:
    - {name: income_k, type: float, min: 5, max: 500}
    - {name: debt_ratio, type: float, min: 0, max: 5}
    - {name: age, type: int, min: 18, max: 90}
    - {name: term, type: category, categories: ["36m", "60m"]}
  dataset: {generator: .generator:loans, rows: 4000, seed: 1, id_column: loan_id, min_rows: 1000}
  trainer: {function: .train:make_model, params: {c: 1.0}}
  metrics: {primary: roc_auc}
"""

NEW_LINEAGE_TRAIN = """
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def make_model(categorical, numeric, seed, c):
    features = ColumnTransformer(
        [
            ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("numeric", StandardScaler(), numeric),
        ]
    )
    model = LogisticRegression(C=c, max_iter=500, random_state=seed)
    return Pipeline([("features", features), ("model", model)])
"""

NEW_LINEAGE_GENERATOR = """
import numpy as np
import pandas as pd


def loans(rows, seed):
    rng = np.random.default_rng(seed)
    income = np.round(np.clip(rng.lognormal(3.9, 0.5, rows), 5, 500), 1)
    debt = np.round(np.clip(rng.gamma(2.0, 0.3, rows), 0, 5), 3)
    age = rng.integers(18, 91, rows)
    term = np.where(rng.random(rows) < 0.3, "60m", "36m").astype(object)
    logit = -2.0 + 1.6 * debt - 0.01 * income - 0.02 * (age - 40) + 0.7 * (term == "60m")
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"loan_id": np.arange(rows), "income_k": income, "debt_ratio": debt,
                         "age": age, "term": term, "defaulted": label})
"""


@contextmanager
def loans_tree() -> Iterator[Any]:
    """A defs-folder sandbox holding the loans lineage above (YAML, train and generator files),
    and its component tree."""
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "loans"
        folder.mkdir()
        (folder / "defs.yaml").write_text(NEW_LINEAGE_YAML)
        (folder / "train.py").write_text(NEW_LINEAGE_TRAIN)
        (folder / "generator.py").write_text(NEW_LINEAGE_GENERATOR)
        with sandbox.build_component_tree() as tree:
            yield tree


def test_a_new_lineage_in_a_temporary_defs_folder_needs_no_platform_change(
    tmp_path: Path, mlflow_resource: MlflowResource, dagster_instance: DagsterInstance
):
    with loans_tree() as tree:
        catalog, defs = catalog_of(tree), tree.build_defs()
        resources = local_resources(tmp_path / "artifacts", mlflow_resource)
        result = materialize(
            assets_of_lineage(defs, "loans"), resources=resources, instance=dagster_instance
        )
    assert result.success
    assert checks_of(result) == dict.fromkeys(ALL_CHECKS, True)
    report = metadata_of(result, "loans/export_validation_report")
    assert report["native_roc_auc"] > 0.65
    assert report["registered_model"].startswith("loan-default v")
    spec = catalog.by_model("loan-default")
    assert spec is not None and spec.higher_is_better and spec.primary_metric == "roc_auc"
    onnx_ref = ArtifactRef.from_json(ref_path(tmp_path / "artifacts", "loans__onnx").read_text())
    scorer = OnnxTabularScorer(onnx_ref.read_verified(), spec.features, spec.task)
    proba = scorer.predict_records(
        [
            {"income_k": 30.0, "debt_ratio": 2.5, "age": 25, "term": "60m"},
            {"income_k": 200.0, "debt_ratio": 0.1, "age": 50, "term": "36m"},
        ]
    )
    assert 0 <= proba[1] < proba[0] <= 1
