"""Jobs over the asset graph."""

from __future__ import annotations

import warnings

from dagster import AssetSelection, BetaWarning, Definitions, define_asset_job

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    from dagster_mlflow import end_mlflow_on_run_finished

fraud_lineage_job = define_asset_job(
    "fraud_lineage_job",
    selection=AssetSelection.groups("data", "training", "export", "validation"),
    description="raw_transactions → … → export_validation_report, with every check.",
    hooks={end_mlflow_on_run_finished},
)

defs = Definitions(jobs=[fraud_lineage_job])
