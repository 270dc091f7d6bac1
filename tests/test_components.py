"""The ModelLineage component: the shipped curves lineage, dg's view of it, scaffolding, and a
new lineage declared in a temporary defs folder, all materialized on real components."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
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
    ExecuteInProcessResult,
    build_defs_for_component,
    load_from_defs_folder,
    materialize,
)
from dagster.components.testing import create_defs_folder_sandbox
from pydantic import ValidationError
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_assets.components import (
    Dataset,
    Feature,
    Metrics,
    ModelLineage,
    ReindexSensor,
    SearchIndex,
    Tenant,
    Trainer,
)
from ml_assets.components.defs_folder import catalog_of
from ml_assets.core import search_spec
from ml_assets.core.artifacts import ArtifactRef
from ml_assets.core.catalog import Catalog
from ml_assets.core.corpus import default_corpus_path
from ml_assets.core.hashing import sha256_file
from ml_assets.core.lineage_spec import FeatureSpec
from ml_assets.core.search_spec import SearchSpecError
from ml_assets.core.tabular_expectations import validate_frame
from ml_assets.core.tabular_model import check_estimator, select_features, to_onnx_bytes
from ml_assets.core.tabular_scorer import OnnxTabularScorer
from ml_assets.core.validation_records import chain_of, model_evidence
from ml_assets.dagster_records import DagsterRecords
from ml_assets.lineages.curves.generator import forward_curves
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import ref_path
from tests.conftest import REPO
from tests.helpers import (
    CATALOG,
    EMBEDDER_MODEL,
    FRAUD_MODEL,
    assets_of_lineage,
)

CURVES_ROWS = 5_000
STAGES = ("raw_data", "splits", "model", "onnx", "export_validation_report")
CURVES = tuple(f"curves/{s}" for s in STAGES)
ALL_CHECKS = {"expectations", "quality_delta", "output_parity", "latency"}


def versions_of(result: ExecuteInProcessResult) -> dict[str, str]:
    return {
        e.materialization.asset_key.to_user_string(): e.materialization.tags["dagster/data_version"]
        for e in result.get_asset_materialization_events()
    }


def metadata_of(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for e in result.get_asset_materialization_events():
        if e.materialization.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def checks_of(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def raw_config(name: str, **config: Any) -> dict[str, Any]:
    return {"ops": {f"{name}__raw_data": {"config": config}}}


def dg_env(dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    venv = Path(sys.executable).parent.parent
    env.update(
        DAGSTER_HOME=str(dagster_home),
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    dg = Path(sys.executable).parent / "dg"
    return subprocess.run(
        [str(dg), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


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


def test_dg_check_and_list_defs(tmp_path: Path):
    env = dg_env(tmp_path)
    checked = run_dg(["check", "defs"], REPO, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = run_dg(["list", "defs", "--json"], REPO, env)
    assert listed.returncode == 0, listed.stderr
    defs = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert set(CURVES) <= set(assets)
    assert {assets[a]["group_name"] for a in CURVES} == {"curves"}
    assert assets["curves/raw_data"]["source"].endswith("lineages/curves/defs.yaml:2")
    checks = {c["key"] for c in defs["asset_checks"]}
    assert {
        "curves/raw_data:expectations",
        "curves/export_validation_report:quality_delta",
        "curves/export_validation_report:output_parity",
        "curves/export_validation_report:latency",
    } <= checks
    assert "curves_lineage_job" in {j["name"] for j in defs["jobs"]}
    # The text index is declared too (a SearchIndex in lineages/text/defs.yaml).
    for key in (
        "search_corpus",
        "embedding_model_onnx",
        "embedding_index",
        "search_quality_report",
    ):
        assert assets[key]["source"].endswith("lineages/text/defs.yaml:4"), assets[key]
    assert "search_quality_report:hybrid_not_worse" in checks
    assert {"reindex_job"} <= {j["name"] for j in defs["jobs"]}
    assert "reindex_sensor" in {s["name"] for s in defs["sensors"]}
    components = run_dg(["list", "components"], REPO, env)
    assert "ml_assets.components.ModelLineage" in components.stdout
    assert "ml_assets.components.SearchIndex" in components.stdout


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


def test_a_bare_estimator_over_numeric_features_exports_with_named_inputs():
    df = forward_curves(400, seed=2)
    features = [FeatureSpec(n, "float") for n in ("settle_lag1", "volatility")]
    names = [f.name for f in features]
    for bare in (Ridge(), make_pipeline(StandardScaler(), Ridge())):
        model = select_features(bare, features).fit(df[names], df["next_settlement"])
        scorer = OnnxTabularScorer(
            to_onnx_bytes(model, features, "regression", "t"), features, "regression"
        )
        native = model.predict(df[names])
        assert np.max(np.abs(scorer.predict_columns({n: df[n] for n in names}) - native)) < 1e-3
    with pytest.raises(TypeError, match="fitted"):
        check_estimator(Ridge().fit(df[names], df["next_settlement"]), "regression", "t")
    with pytest.raises(TypeError, match="not a classifier"):
        check_estimator(Ridge(), "classification", "t")


def test_the_component_is_a_plain_python_object_too():
    lineage = ModelLineage(
        name="curves_py",
        registered_model="curve-forecaster-py",
        task="regression",
        label="next_settlement",
        features=[Feature(name="settle_lag1", type="float", min=0.01)],
        dataset=Dataset(generator="ml_assets.lineages.curves.generator:forward_curves"),
        trainer=Trainer(
            function="ml_assets.lineages.curves.train:make_model",
            params={"max_iter": 10, "learning_rate": 0.1},
        ),
        metrics=Metrics(primary="rmse"),
    )
    defs = build_defs_for_component(lineage)
    keys = {k.to_user_string() for a in defs.assets or [] for k in a.keys}
    assert keys == {f"curves_py/{s}" for s in (*STAGES, "inference_drift")}
    assert lineage.spec().higher_is_better is False
    relative = lineage.model_copy(update={"trainer": Trainer(function=".train:make_model")})
    with pytest.raises(ValueError, match="relative to this component's defs folder"):
        build_defs_for_component(relative)
    with pytest.raises(ValidationError, match="bogus"):
        ModelLineage(**lineage.model_dump(), bogus=1)
    with pytest.raises(ValidationError, match="score_routes is for classification"):
        ModelLineage(
            **{**lineage.model_dump(), "score_routes": {"decision_field": "x", "threshold": 0.5}}
        )
    with pytest.raises(ValidationError, match="not a regression metric"):
        ModelLineage(**{**lineage.model_dump(), "metrics": {"primary": "roc_auc"}})


def test_a_search_index_declaration_is_checked_before_anything_runs(tmp_path: Path):
    shipped = search_spec.shipped()
    assert shipped.tenant_ids == ("boreal-commodities", "helios-trading", "northwind-energy")
    assert shipped.corpus() == default_corpus_path() and shipped.labelled_sets == ("docs",)
    index = SearchIndex(
        registered_model=EMBEDDER_MODEL,
        tenants=[Tenant(id="acme")],
        corpus="c.jsonl",
        queries="q.jsonl",
    )
    spec = index.spec(base=tmp_path, declared_in="x/defs.yaml")
    assert spec.corpus_path == (tmp_path / "c.jsonl").resolve()
    defs = index.definitions()  # a plain Python object too
    assert {a.key.to_user_string() for a in defs.assets if hasattr(a, "key")} == {
        "embedding_model_onnx",
        "search_corpus",
        "embedding_index",
        "search_quality_report",
    }
    with pytest.raises(ValidationError, match="bogus"):
        SearchIndex(registered_model="e", tenants=[Tenant(id="acme")], bogus=1)
    with pytest.raises(ValidationError, match="registered_model"):
        SearchIndex(tenants=[Tenant(id="acme")])  # the embedder's name is the YAML's to give
    # The embedder's name cannot be a lineage's model: the gate would not know which it is.
    clash = SearchIndex(registered_model=FRAUD_MODEL, tenants=[Tenant(id="acme")])
    with pytest.raises(SearchSpecError, match="lineage 'fraud'"):
        Catalog(lineages=CATALOG.lineages, index=clash.spec())
    bad = {
        "registered_model 'no spaces'": dict(registered_model="no spaces"),
        "set `corpus` and `queries` together": dict(corpus="c.jsonl"),
        "declare at least one tenant": dict(tenants=[]),
        "tenants declared twice": dict(tenants=[Tenant(id="a"), Tenant(id="a")]),
        "tenant id 'Not OK'": dict(tenants=[Tenant(id="Not OK")]),
        "packaged sets are": dict(labelled_sets=["nope"]),
        "interval_s must be >= 30": dict(reindex_sensor=ReindexSensor(interval_s=1)),
    }
    for message, fields in bad.items():
        index = SearchIndex(**{"registered_model": "e", "tenants": [Tenant(id="acme")], **fields})
        with pytest.raises(SearchSpecError, match=re.escape(message)):
            index.spec(declared_in="x/defs.yaml")


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


def test_the_readme_search_index_yaml_is_a_valid_declaration(tmp_path: Path):
    """README, "Your own corpus and tenants": the YAML shown is what the component accepts."""
    import yaml

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    (doc,) = [yaml.safe_load(b) for b in blocks if "ml_assets.components.SearchIndex" in b]
    spec = SearchIndex(**doc["attributes"]).spec(base=tmp_path, declared_in="README.md")
    assert spec.registered_model == "text-embedder"
    assert spec.tenant_ids == ("acme-grid", "globex-labs")
    assert spec.corpus_path == (tmp_path / "my_corpus.jsonl").resolve()


def test_dg_scaffold_defs_output_materializes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mlflow_resource: MlflowResource,
    dagster_instance: DagsterInstance,
):
    project = tmp_path / "starter_project"
    (project / "starter" / "defs").mkdir(parents=True)
    (project / "starter" / "__init__.py").write_text("")
    (project / "starter" / "defs" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "starter"
            version = "0"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "starter"
            registry_modules = ["ml_assets.components"]
            """
        )
    )
    env = dg_env(tmp_path)
    env["PYTHONPATH"] = str(project)
    done = run_dg(["scaffold", "defs", "ml_assets.components.ModelLineage", "flats"], project, env)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = project / "starter" / "defs" / "flats"
    assert {p.name for p in folder.iterdir()} >= {"defs.yaml", "train.py"}

    monkeypatch.syspath_prepend(str(project))
    defs = load_from_defs_folder(path_within_project=project)
    result = materialize(
        assets_of_lineage(defs, "flats"),
        resources=local_resources(tmp_path / "artifacts", mlflow_resource),
        instance=dagster_instance,
    )
    assert result.success
    assert checks_of(result) == dict.fromkeys(ALL_CHECKS, True)
    assert set(versions_of(result)) == {f"flats/{s}" for s in STAGES}
    for name in [m for m in sys.modules if m == "starter" or m.startswith("starter.")]:
        del sys.modules[name]


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


def test_a_new_lineage_in_a_temporary_defs_folder_needs_no_platform_change(
    tmp_path: Path, mlflow_resource: MlflowResource, dagster_instance: DagsterInstance
):
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "loans"
        folder.mkdir()
        (folder / "defs.yaml").write_text(NEW_LINEAGE_YAML)
        (folder / "train.py").write_text(NEW_LINEAGE_TRAIN)
        (folder / "generator.py").write_text(NEW_LINEAGE_GENERATOR)
        with sandbox.build_component_tree() as tree:
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
