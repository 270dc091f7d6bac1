"""Declaring with the components: dg's view of the defs folder (check, list, scaffold), a
ModelLineage as a plain Python object, SearchIndex declarations checked before anything runs."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from dagster import (
    DagsterInstance,
    build_defs_for_component,
    load_from_defs_folder,
    materialize,
)
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
from ml_assets.lineages.curves.generator import forward_curves
from ml_assets.platform.catalog import Catalog, CatalogError
from ml_assets.platform.lineage_spec import FeatureSpec
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from ml_assets.search import spec as search_spec
from ml_assets.search.corpus import default_corpus_path
from ml_assets.search.spec import SearchSpecError
from ml_assets.tabular.model import check_estimator, select_features, to_onnx_bytes
from ml_assets.tabular.scorer import OnnxTabularScorer
from tests.conftest import REPO
from tests.helpers import (
    ALL_CHECKS,
    CATALOG,
    EMBEDDER_MODEL,
    FRAUD_MODEL,
    STAGES,
    assets_of_lineage,
    checks_of,
    dg_env,
    run_dg,
)
from tests.helpers import CURVES_LINEAGE as CURVES
from tests.helpers import data_versions as versions_of


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
    monitoring = ("inference_drift", "inference_log_retention")
    assert keys == {f"curves_py/{s}" for s in (*STAGES, *monitoring)}
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
    with pytest.raises(CatalogError, match="lineage 'fraud'"):
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
