"""The code location loads, with the asset graph, checks and jobs it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from dagster import AssetKey, Definitions

from ml_assets.definitions import build_definitions
from ml_assets.platform.dsn import with_database

REPO = Path(__file__).resolve().parents[1]
# What `@dg.definitions` in ml_assets/definitions.py hands Dagster.
defs = build_definitions()

STAGES = ("raw_data", "splits", "model", "onnx", "export_validation_report")
CURVES = tuple(f"curves/{s}" for s in STAGES)
FRAUD = tuple(f"fraud/{s}" for s in STAGES)


def test_asset_graph_snapshot():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "search_corpus",
        "embedding_model_onnx",
        "embedding_index",
        "search_quality_report",
        "serving_bundle",
        "serving_deployment",
        "nightly_validation",
        "nightly_smoke",
        *FRAUD,
        *CURVES,
        "fraud/inference_drift",
        "curves/inference_drift",
        "fraud/inference_log_retention",
        "curves/inference_log_retention",
    }
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "search_corpus": "search",
        "embedding_model_onnx": "export",
        "embedding_index": "search",
        "search_quality_report": "validation",
        "serving_bundle": "serving",
        "serving_deployment": "serving",
        "nightly_validation": "ops",
        "nightly_smoke": "ops",
        **dict.fromkeys(FRAUD, "fraud"),
        **dict.fromkeys(CURVES, "curves"),
        "fraud/inference_drift": "fraud",
        "curves/inference_drift": "curves",
        "fraud/inference_log_retention": "fraud",
        "curves/inference_log_retention": "curves",
    }
    parents = {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }
    # Every declared lineage (a ModelLineage component in ml_assets/lineages/<name>/defs.yaml)
    # has the same chain, and feeds the bundle and the nightly validation.
    for name in ("fraud", "curves"):
        assert parents[f"{name}/splits"] == [f"{name}/raw_data"]
        assert parents[f"{name}/model"] == [f"{name}/splits"]
        assert parents[f"{name}/onnx"] == [f"{name}/model", f"{name}/splits"]
        assert parents[f"{name}/export_validation_report"] == [
            f"{name}/model",
            f"{name}/onnx",
            f"{name}/splits",
        ]
    assert parents["serving_bundle"] == [
        "curves/onnx",
        "embedding_model_onnx",
        "fraud/onnx",
        "search_quality_report",
    ]
    assert parents["nightly_validation"] == [
        "curves/export_validation_report",
        "fraud/export_validation_report",
        "search_quality_report",
    ]
    assert parents["nightly_smoke"] == ["serving_bundle"]
    # Drift judges what the bundle serves, retention cuts what it logged: downstream of it.
    for name in ("fraud", "curves"):
        assert parents[f"{name}/inference_drift"] == ["serving_bundle"]
        assert parents[f"{name}/inference_log_retention"] == ["serving_bundle"]
    for key in graph.get_all_asset_keys():
        assert graph.get(key).code_version, key


def test_checks_are_blocking():
    specs = {
        (s.asset_key.to_user_string(), s.name): s
        for a in defs.resolve_asset_graph().assets_defs
        for s in a.check_specs
    }
    assert set(specs) == {
        ("fraud/raw_data", "expectations"),
        ("fraud/export_validation_report", "quality_delta"),
        ("fraud/export_validation_report", "output_parity"),
        ("fraud/export_validation_report", "latency"),
        ("embedding_model_onnx", "fp32_parity"),
        ("embedding_model_onnx", "int8_parity"),
        ("embedding_model_onnx", "int8_retrieval"),
        ("search_quality_report", "hybrid_not_worse"),
        ("serving_bundle", "smoke"),
        ("nightly_validation", "no_regression"),
        ("nightly_smoke", "no_regression"),
        ("curves/raw_data", "expectations"),
        ("curves/export_validation_report", "quality_delta"),
        ("curves/export_validation_report", "output_parity"),
        ("curves/export_validation_report", "latency"),
        ("fraud/inference_drift", "psi_within_fail"),
        ("curves/inference_drift", "psi_within_fail"),
    }
    assert all(s.blocking for s in specs.values())


def test_jobs_and_resources():
    job = defs.resolve_job_def("fraud_lineage_job")
    assert job.asset_layer.executable_asset_keys >= {AssetKey(["fraud", "raw_data"])}
    assert {"store", "io_manager", "mlflow", "postgres", "bento"} <= set(defs.resources or {})
    assert defs.resolve_job_def("search_lineage_job")
    assert defs.resolve_job_def("reindex_job")
    assert defs.resolve_job_def("serving_job")
    assert defs.resolve_job_def("promote_model_job")
    for name in ("nightly_validation_job", "nightly_smoke_job", "set_smoke_baseline_job"):
        assert defs.resolve_job_def(name)
    schedules = {s.name: s for s in defs.schedules or []}
    assert set(schedules) == {
        "nightly_validation_schedule",
        "nightly_smoke_schedule",
        "inference_monitoring_schedule",
    }
    assert defs.resolve_job_def("inference_monitoring_job")
    assert schedules["nightly_validation_schedule"].cron_schedule == "0 2 * * *"
    assert all(s.execution_timezone == "UTC" for s in schedules.values())
    assert sorted(s.name for s in defs.sensors or []) == [
        "model_promotion_sensor",
        "reindex_sensor",
    ]
    assert defs.resolve_asset_graph().get(AssetKey("embedding_index")).pools == {"reindex"}


def test_definitions_validate():
    Definitions.validate_loadable(defs)


def test_dagster_definitions_validate_cli(pg_dsn: str):
    # The CLI reads the repo's dagster.yaml, so it needs the instance storage that file names.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DAGSTER_PG_URL"] = with_database(pg_dsn, "dagster", "psycopg2")
    done = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ml_assets" in done.stdout + done.stderr


def test_pinned_stack_resolved():
    """pip backtracks silently to 2019-era integrations if the family drifts (shared/STACK.md)."""
    assert metadata.version("dagster") == "1.13.27"
    assert metadata.version("dagster-postgres") == "0.29.27"
    assert metadata.version("dagster-mlflow") == "0.29.27"
    assert metadata.version("mlflow").startswith("3.17.")
    assert metadata.version("bentoml").startswith("1.4.")
