"""Bad input is stopped with a clear error, and nothing materialized earlier is lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from ml_assets.lineages.fraud.generator import generate_transactions
from ml_assets.platform.hashing import sha256_file
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from tests.conftest import TEST_ROWS
from tests.helpers import (
    FRAUD_ASSETS,
    FRAUD_DATA,
    FRAUD_MODEL,
    LINEAGE,
    RAW,
    SPLITS,
    failure_text,
    latest_metadata,
    latest_storage_id,
    materialize_fraud,
    rerun_on_stored,
    run_config,
)


@pytest.fixture(scope="module")
def good_state(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_resource: MlflowResource,
    dagster_instance: DagsterInstance,
):
    root = tmp_path_factory.mktemp("bad_input_artifacts")
    resources = local_resources(root, mlflow_resource)
    assert materialize_fraud(resources, dagster_instance).success
    return resources


def _snapshot(instance: DagsterInstance, client) -> dict:
    return {
        "storage_ids": {a: latest_storage_id(instance, a) for a in LINEAGE},
        "files": {
            a: (latest_metadata(instance, a)["path"], latest_metadata(instance, a)["sha256"])
            for a in LINEAGE
        },
        "versions": len(client.search_model_versions(f"name = '{FRAUD_MODEL}'")),
    }


def _assert_intact(instance: DagsterInstance, before: dict, client, *, raw_replaced: bool) -> None:
    after = _snapshot(instance, client)
    for asset in LINEAGE:
        if raw_replaced and asset == RAW:
            continue
        assert after["storage_ids"][asset] == before["storage_ids"][asset], asset
    assert after["versions"] == before["versions"]
    for asset, (path, sha) in before["files"].items():
        assert Path(path).exists() and sha256_file(path) == sha, asset


def _frame() -> pd.DataFrame:
    return generate_transactions(3_000, seed=11)


def _write(tmp_path: Path, name: str, df) -> str:
    path = tmp_path / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return str(path)


BAD_FILES = {
    "missing_column": (lambda df: df.drop(columns=["amount"]), "amount"),
    "wrong_dtype": (lambda df: df.assign(hour=df["hour"].map(lambda h: f"{h}h")), "hour"),
    "all_one_class": (lambda df: df.assign(is_fraud=0), "is_fraud"),
    "nulls": (lambda df: df.assign(account_age_days=None), "account_age_days"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_stopped_by_the_blocking_check(
    case, good_state, dagster_instance, mlflow_resource, tmp_path
):
    mutate, column = BAD_FILES[case]
    client = mlflow_resource.client
    before = _snapshot(dagster_instance, client)
    path = _write(tmp_path, f"{case}.csv", mutate(_frame()))
    result = materialize(
        FRAUD_ASSETS,
        resources=good_state,
        instance=dagster_instance,
        run_config=run_config(0, source_path=path),
        raise_on_error=False,
    )
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "expectations"]
    assert not check.passed
    assert column in check.description
    materialized = {
        m.materialization.asset_key.to_user_string()
        for m in result.get_asset_materialization_events()
    }
    assert materialized == {RAW}
    _assert_intact(dagster_instance, before, client, raw_replaced=True)

    # A later run of the next step alone still refuses the unvalidated version.
    later = rerun_on_stored("raw_data", "splits", good_state, dagster_instance)
    assert not later.success
    assert "failed its expectations" in failure_text(later)
    _assert_intact(dagster_instance, before, client, raw_replaced=True)


@pytest.mark.parametrize("case", ["missing", "empty", "header_only", "not_a_table"])
def test_unreadable_file_fails_the_run_and_loses_nothing(
    case, good_state, dagster_instance, mlflow_resource, tmp_path
):
    client = mlflow_resource.client
    before = _snapshot(dagster_instance, client)
    path = tmp_path / "transactions.csv"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "header_only":
        path.write_text(",".join(_frame().columns) + "\n")
    elif case == "not_a_table":
        path = tmp_path / "transactions.parquet"
        path.write_text("this is not parquet")
    result = materialize(
        FRAUD_ASSETS,
        resources=good_state,
        instance=dagster_instance,
        run_config=run_config(0, source_path=str(path)),
        raise_on_error=False,
    )
    assert not result.success
    assert len(result.get_step_failure_events()) == 1
    assert str(path) in failure_text(result)
    assert result.get_asset_materialization_events() == []
    _assert_intact(dagster_instance, before, client, raw_replaced=False)


def test_good_file_is_ingested(good_state, dagster_instance, tmp_path):
    path = _write(tmp_path, "good.parquet", _frame())
    result = materialize(
        FRAUD_DATA,
        resources=good_state,
        instance=dagster_instance,
        run_config=run_config(0, source_path=path),
    )
    assert result.success
    md = latest_metadata(dagster_instance, RAW)
    assert md["source"] == str(Path(path).resolve())
    assert md["dagster/row_count"] == 3_000


def test_tampered_artifact_is_refused(good_state, dagster_instance, tmp_path):
    """A file changed after it was written is never loaded downstream."""
    assert materialize(
        FRAUD_DATA,
        resources=good_state,
        instance=dagster_instance,
        run_config=run_config(TEST_ROWS),
    ).success
    path = Path(latest_metadata(dagster_instance, SPLITS)["path"])
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10] + b"0123456789")
        result = rerun_on_stored("splits", "model", good_state, dagster_instance)
        assert not result.success
        assert "modified after it was written" in failure_text(result)
    finally:
        path.write_bytes(original)
