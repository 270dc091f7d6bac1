"""The data stages of a declared lineage: raw_data (+ its blocking expectations) and splits.

Each asset stores its bytes in the content store and returns `hashed_output` (data version =
sha256 of the bytes).
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from ml_assets.components.model_lineage.data_verdict import (
    require_validated,
    validation_record_path,
)
from ml_assets.components.model_lineage.resolve import LineagePlan
from ml_assets.platform.artifacts import ArtifactRef, atomic_write, lineage_of
from ml_assets.platform.hashing import canonical_json, parquet_bytes, read_parquet_bytes
from ml_assets.platform.provenance import hashed_output, md_table, timed
from ml_assets.resources.storage import ArtifactStore
from ml_assets.tabular.data import SourceError, generate, read_table, split_frame
from ml_assets.tabular.expectations import validate_frame


class RawDataConfig(dg.Config):
    source_path: str | None = Field(
        default=None,
        description="A CSV or Parquet file to ingest instead of the lineage's declared source.",
    )
    rows: int | None = Field(default=None, description="Rows to generate (default: YAML's).")
    seed: int | None = Field(default=None, description="Generator seed (default: YAML's).")


def raw_data_stage(plan: LineagePlan) -> dg.AssetsDefinition:
    """`raw_data`: generated from the declared seed, or ingested from a file."""
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions

    @dg.asset(
        key=plan.key("raw_data"),
        kinds={"parquet"},
        group_name=lin.name,
        code_version=cv["raw_data"],
        description=f"{lin.name}'s raw data: generated from a seed, or ingested from a file.",
    )
    def raw_data(
        context: dg.AssetExecutionContext, config: RawDataConfig, store: ArtifactStore
    ) -> dg.Output[ArtifactRef]:
        path = config.source_path or lin.dataset.path
        rows = lin.dataset.rows if config.rows is None else config.rows
        seed = lin.dataset.seed if config.seed is None else config.seed
        with timed() as t:
            try:
                if path:
                    df = read_table(path)
                    source = str(Path(path).expanduser().resolve())
                else:
                    df = generate(plan.generator, rows, seed, str(plan.generator_ref))
                    source = str(plan.generator_ref)
            except SourceError as exc:
                raise dg.Failure(f"{spec.asset('raw_data')}: {exc}") from exc
            context.log.info(f"{len(df):,} rows from {source}")
            ref = store.content().put(
                spec.asset("raw_data"),
                parquet_bytes(df),
                ".parquet",
                code_version=cv["raw_data"],
                extra={"source": source, "rows": len(df)},
            )
        return hashed_output(
            ref,
            seeds={} if path else {"generator_seed": seed},
            wall_time_s=t["seconds"],
            metadata={
                "source": dg.MetadataValue.text(source),
                "dagster/row_count": dg.MetadataValue.int(len(df)),
                "columns": dg.MetadataValue.int(len(df.columns)),
                "preview": dg.MetadataValue.md(df.head(5).to_markdown(index=False)),
            },
        )

    return raw_data


def expectations_stage(plan: LineagePlan) -> dg.AssetChecksDefinition:
    """The blocking Great Expectations check of `raw_data`, generated from the declaration."""
    lin, spec = plan.lineage, plan.spec
    task, label = spec.task, spec.label

    @dg.asset_check(
        asset=plan.key("raw_data"),
        name=spec.expectations_check,
        blocking=True,
        description="Great Expectations generated from the declared schema: columns, types, "
        "nulls, ranges, categories, unique ids, row count.",
    )
    def expectations(raw_data: ArtifactRef, store: ArtifactStore) -> dg.AssetCheckResult:
        df = read_parquet_bytes(raw_data.read_verified())
        outcomes = validate_frame(
            df,
            spec.features,
            label=label,
            task=task,
            id_column=lin.dataset.id_column,
            min_rows=lin.dataset.min_rows,
            label_rate=plan.spec.label_rate,
            name=spec.asset("raw_data"),
        )
        failed = [o for o in outcomes if not o.success]
        atomic_write(
            validation_record_path(store, raw_data),
            canonical_json(
                {
                    "sha256": raw_data.sha256,
                    "passed": not failed,
                    "failed": [o.__dict__ for o in failed],
                }
            ),
        )
        rows = [
            {"expectation": o.expectation, "column": o.column, "ok": o.success, "detail": o.detail}
            for o in outcomes
        ]
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{len(outcomes)} expectations passed"
            if not failed
            else f"{len(failed)} of {len(outcomes)} expectations failed: "
            + "; ".join(f"{o.column}: {o.expectation} ({o.detail})" for o in failed[:5]),
            metadata={
                "evaluated": dg.MetadataValue.int(len(outcomes)),
                "failed": dg.MetadataValue.int(len(failed)),
                "data_sha256": dg.MetadataValue.text(raw_data.sha256),
                "results": dg.MetadataValue.md(md_table(rows)),
            },
        )

    return expectations


def splits_stage(plan: LineagePlan) -> dg.AssetsDefinition:
    """`splits`: the deterministic train/valid/test split of `raw_data`."""
    lin, spec, cv = plan.lineage, plan.spec, plan.code_versions
    task, label = spec.task, spec.label

    @dg.asset(
        key=plan.key("splits"),
        kinds={"parquet"},
        ins=plan.ins("raw_data"),
        group_name=lin.name,
        code_version=cv["splits"],
        description="A deterministic train/valid/test split: one Parquet with a `split` column.",
    )
    def splits(
        context: dg.AssetExecutionContext, store: ArtifactStore, raw_data: ArtifactRef
    ) -> dg.Output[ArtifactRef]:
        require_validated(store, raw_data)
        with timed() as t:
            df = read_parquet_bytes(raw_data.read_verified())
            try:
                out = split_frame(
                    df,
                    label=label,
                    task=task,
                    valid_fraction=lin.split.valid_fraction,
                    test_fraction=lin.split.test_fraction,
                    seed=lin.split.seed,
                    id_column=lin.dataset.id_column,
                )
            except SourceError as exc:
                raise dg.Failure(f"{spec.asset('splits')}: {exc}") from exc
            ref = store.content().put(
                spec.asset("splits"),
                parquet_bytes(out),
                ".parquet",
                code_version=cv["splits"],
                lineage=lineage_of(raw_data),
            )
        summary = out.groupby("split", sort=False)[label].agg(rows="size", label_mean="mean")
        context.log.info(f"split {len(out):,} rows: {summary['rows'].to_dict()}")
        return hashed_output(
            ref,
            upstream={spec.asset("raw_data"): raw_data},
            seeds={"split_seed": lin.split.seed},
            wall_time_s=t["seconds"],
            metadata={
                "dagster/row_count": dg.MetadataValue.int(len(out)),
                "splits": dg.MetadataValue.md(md_table(summary.reset_index().to_dict("records"))),
            },
        )

    return splits
