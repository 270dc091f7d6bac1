"""The whole fraud lineage on real components: embedded Postgres, MLflow registry, ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from dagster._core.definitions.data_version import StaleStatus

from ml_assets.assets.data import raw_transactions, raw_transactions_expectations, training_splits
from ml_assets.assets.export import fraud_model_onnx
from ml_assets.assets.training import REGISTERED_MODEL, fraud_model
from ml_assets.assets.validation import export_validation_report
from ml_assets.core.artifacts import ArtifactRef
from ml_assets.core.hashing import sha256_file
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from tests.conftest import TEST_ROWS
from tests.helpers import FRAUD_ASSETS, LINEAGE, data_versions, latest_metadata, run_config


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lineage_artifacts")


@pytest.fixture(scope="module")
def first_run(
    shared_root: Path, mlflow_resource: MlflowResource, dagster_instance: DagsterInstance
):
    resources = local_resources(shared_root, mlflow_resource)
    result = materialize(
        FRAUD_ASSETS,
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS),
    )
    return result, resources


def test_lineage_materializes_with_hashes_metrics_and_registry(first_run, dagster_instance):
    result, resources = first_run
    assert result.success
    versions = data_versions(result)
    assert set(versions) == set(LINEAGE)
    for asset in LINEAGE:
        md = latest_metadata(dagster_instance, asset)
        # Data version is the sha256 of the stored bytes, and the file still hashes to it.
        assert md["sha256"] == versions[asset]
        assert sha256_file(md["path"]) == md["sha256"]
        assert md["code_version"].startswith(f"{asset}@")
        assert md["environment"]["python"].startswith("3.11")
        assert "scikit-learn" in md["environment"]["packages"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "expectations": True,
        "quality_delta": True,
        "output_parity": True,
        "latency": True,
    }

    model_md = latest_metadata(dagster_instance, "fraud_model")
    assert model_md["test_roc_auc"] > 0.85
    assert model_md["test_pr_auc"] > 0.15
    assert latest_metadata(dagster_instance, "training_splits")["upstream_data_versions"] == {
        "raw_transactions": versions["raw_transactions"]
    }

    client = resources["mlflow"].client
    onnx_ref = ArtifactRef.from_json(
        (Path(resources["store"].base_dir) / "refs" / "fraud_model_onnx.json").read_text()
    )
    version = client.get_model_version(REGISTERED_MODEL, onnx_ref.extra["model_version"])
    assert version.tags["model_sha256"] == versions["fraud_model"]
    assert version.tags["onnx_sha256"] == versions["fraud_model_onnx"]
    assert version.tags["raw_transactions_sha256"] == versions["raw_transactions"]
    assert version.tags["export_validation"] == "passed"
    run = client.get_run(version.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(model_md["test_roc_auc"])
    assert run.data.params["seed"] == "7"
    local = client.download_artifacts(version.run_id, "provenance.json")
    provenance = json.loads(Path(local).read_text())
    assert [link["asset"] for link in provenance["chain"]] == [
        "raw_transactions",
        "training_splits",
        "fraud_model",
        "fraud_model_onnx",
    ]
    assert [link["sha256"] for link in provenance["chain"]] == [versions[a] for a in LINEAGE[:4]]
    assert version.tags["provenance_sha256"] == sha256_file(local)


def test_rerun_gives_identical_hashes_and_a_seed_change_changes_them(
    first_run, dagster_instance, mlflow_resource
):
    result, resources = first_run
    first = data_versions(result)
    again = materialize(
        FRAUD_ASSETS,
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS),
    )
    assert again.success
    second = data_versions(again)
    # The report's hash covers quality and parity; latency is measured beside it.
    assert second == first

    reseeded = materialize(
        FRAUD_ASSETS,
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS, seed=8),
    )
    assert reseeded.success
    third = data_versions(reseeded)
    for asset in LINEAGE:
        assert third[asset] != first[asset], asset


def test_seed_or_code_change_makes_downstream_stale(first_run, dagster_instance):
    """Dagster marks an asset stale when its code version or an input's data version changed."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    _, resources = first_run
    assets = [
        raw_transactions,
        training_splits,
        fraud_model,
        fraud_model_onnx,
        export_validation_report,
    ]

    def status(asset_defs: list, key: str) -> StaleStatus:
        return get_stale_status_resolver(dagster_instance, asset_defs).get_status(AssetKey(key))

    assert materialize(
        FRAUD_ASSETS,
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS),
    ).success
    assert all(status(assets, a) == StaleStatus.FRESH for a in LINEAGE)

    # A new code version of training_splits makes it stale; its upstream stays fresh.
    bumped = training_splits.map_asset_specs(
        lambda spec: spec.replace_attributes(code_version="training_splits@999")
    )
    bumped_graph = [raw_transactions, bumped, *assets[2:]]
    assert status(bumped_graph, "training_splits") == StaleStatus.STALE
    assert status(bumped_graph, "raw_transactions") == StaleStatus.FRESH

    # A new seed gives raw_transactions a new data version: what reads it is stale, and the
    # staleness moves down the chain as each level is rebuilt with new bytes.
    assert materialize(
        [raw_transactions],
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS, seed=99),
    ).success
    assert status(assets, "raw_transactions") == StaleStatus.FRESH
    assert status(assets, "training_splits") == StaleStatus.STALE
    assert materialize(
        [raw_transactions, raw_transactions_expectations, training_splits],
        resources=resources,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS, seed=99),
    ).success
    assert status(assets, "training_splits") == StaleStatus.FRESH
    assert status(assets, "fraud_model") == StaleStatus.STALE
    assert status(assets, "export_validation_report") == StaleStatus.STALE
