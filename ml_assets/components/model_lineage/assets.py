"""One declared lineage's Definitions, in named stages: data (raw_data + expectations,
splits: lineage_data), model and export (model, onnx: lineage_model), the export validation
report (lineage_report), and the job that runs them in order.
"""

import warnings

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from ml_assets.components.model_lineage.data import expectations_stage, raw_data_stage, splits_stage
from ml_assets.components.model_lineage.model import export_stage, model_stage
from ml_assets.components.model_lineage.report import report_asset
from ml_assets.components.model_lineage.resolve import LineagePlan

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from dagster_mlflow import end_mlflow_on_run_finished

STAGES = ("raw_data", "splits", "model", "onnx", "export_validation_report")


def lineage_job(plan: LineagePlan) -> UnresolvedAssetJobDefinition:
    """`<name>_lineage_job`: every stage of the lineage, with every check."""
    name = plan.lineage.name
    return dg.define_asset_job(
        f"{name}_lineage_job",
        selection=dg.AssetSelection.assets(*(plan.key(s) for s in STAGES)),
        description=f"{name}: raw_data → … → export_validation_report, with every check.",
        hooks={end_mlflow_on_run_finished},
    )


def build_lineage(plan: LineagePlan) -> dg.Definitions:
    """Assets, checks and the job of one lineage, keyed `[name, stage]` in group `name`: its
    data, model, export and report stages, in the order its job runs them."""
    report = report_asset(plan, plan.key, plan.ins)
    return dg.Definitions(
        assets=[
            raw_data_stage(plan),
            splits_stage(plan),
            model_stage(plan),
            export_stage(plan),
            report,
        ],
        asset_checks=[expectations_stage(plan)],
        jobs=[lineage_job(plan)],
    )
