"""Jobs over the asset graph."""

from __future__ import annotations

import warnings

from dagster import AssetSelection, BetaWarning, Definitions, define_asset_job

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)
    from dagster_mlflow import end_mlflow_on_run_finished

fraud_lineage_job = define_asset_job(
    "fraud_lineage_job",
    selection=AssetSelection.assets(
        "raw_transactions",
        "training_splits",
        "fraud_model",
        "fraud_model_onnx",
        "export_validation_report",
    ),
    description="raw_transactions → … → export_validation_report, with every check.",
    hooks={end_mlflow_on_run_finished},
)

search_lineage_job = define_asset_job(
    "search_lineage_job",
    selection=AssetSelection.assets(
        "search_corpus", "embedding_model_onnx", "embedding_index", "search_quality_report"
    ),
    description="corpus + embedder export → pgvector index → search quality report.",
)

defs = Definitions(jobs=[fraud_lineage_job, search_lineage_job])
