"""The promotion gate as a Dagster job: `promote_model_job` (promote or roll back from the UI)."""

import os

from dagster import (
    Config,
    Definitions,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    ResourceParam,
    job,
    op,
)
from pydantic import Field

from ml_assets.platform import promotion
from ml_assets.platform.catalog import Catalog
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.provenance import md_table
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from ml_assets.resources.mlflow import MlflowResource
from ml_assets.resources.postgres import PostgresResource


class PromoteConfig(Config):
    model: str = Field(
        description="A registered model: the search index's embedder or a declared lineage's."
    )
    version: str = Field(description="The registered version to promote.")
    reason: str = Field(description="Why: recorded as a version tag and in the event.")
    actor: str = Field(default_factory=lambda: os.environ.get("USER", "dagster"))
    margin: float | None = Field(
        default=None,
        ge=0.0,
        description="Override the lineage's declared promotion_margin: how much worse than the "
        "champion (relative) is tolerated. Empty: the YAML's value.",
    )
    rollback: bool = Field(
        default=False, description="Roll back to an earlier version (skips the champion test)."
    )


@op(out=Out(Nothing))
def promote_model(
    context: OpExecutionContext,
    config: PromoteConfig,
    mlflow: MlflowResource,
    postgres: PostgresResource,
    catalog: ResourceParam[Catalog],
) -> Output:
    """The promotion gate; a rejection fails the run with every gate's verdict."""
    try:
        # The config's who, why and how are promote()'s own keyword arguments.
        event = promotion.promote(
            mlflow.client,
            postgres.dsn,
            config.model,
            config.version,
            catalog=catalog,
            records=DagsterRecords.of(context),
            source="dagster",
            **config.model_dump(include={"actor", "reason", "margin", "rollback"}),
        )
    except promotion.PromotionRejected as exc:
        raise Failure(
            str(exc),
            metadata={"gates": MetadataValue.md(md_table(exc.decision.table()))},
        ) from exc
    except ValueError as exc:
        raise Failure(str(exc)) from exc
    context.log.info(f"{config.model} v{config.version} is now {PRODUCTION_ALIAS}")
    return Output(
        None,
        metadata={
            "event_id": MetadataValue.text(event["event_id"]),
            "gates": MetadataValue.md(
                md_table([{"gate": g["name"], "detail": g["detail"]} for g in event["gates"]])
            ),
            "previous_version": MetadataValue.text(str(event["previous_version"])),
        },
    )


@job(description="Promote a registered version to `production` through the promotion gate.")
def promote_model_job() -> None:
    promote_model()


defs = Definitions(jobs=[promote_model_job])
