"""Data stage: the raw transactions, their blocking expectations, and the train/valid/test split."""

import json
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Definitions,
    Failure,
    MetadataValue,
    Output,
    asset,
    asset_check,
)
from pydantic import Field
from sklearn.model_selection import train_test_split

from ml_assets.core.artifacts import ArtifactRef, atomic_write, lineage_of
from ml_assets.core.expectations import validate_transactions
from ml_assets.core.fraud_data import LABEL, generate_transactions
from ml_assets.core.hashing import canonical_json, parquet_bytes, read_parquet_bytes
from ml_assets.provenance import hashed_output, md_table, timed
from ml_assets.resources.storage import ArtifactStore

GROUP = "data"
RAW_CODE_VERSION = "raw_transactions@1"
SPLITS_CODE_VERSION = "training_splits@1"


class RawTransactionsConfig(Config):
    rows: int = Field(default=50_000, description="Rows to generate (ignored with source_path).")
    seed: int = Field(default=7, description="Generator seed; a new seed makes a new dataset.")
    fraud_rate: float = Field(default=0.015, description="Target share of fraudulent rows.")
    source_path: str | None = Field(
        default=None, description="A CSV or Parquet file to ingest instead of generating data."
    )


def _read_source(path_str: str) -> pd.DataFrame:
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise Failure(
            f"source_path {path} does not exist or is not a file; "
            "point raw_transactions' run config at a CSV or Parquet file."
        )
    if path.stat().st_size == 0:
        raise Failure(f"source_path {path} is empty (0 bytes); nothing to ingest.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            raise Failure(
                f"source_path {path}: unsupported file type {suffix!r}; use .csv or .parquet."
            )
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as exc:
        raise Failure(f"source_path {path} could not be read as {suffix[1:]}: {exc}") from exc
    if df.empty:
        raise Failure(f"source_path {path} holds a header but no rows; nothing to ingest.")
    return df


@asset(group_name=GROUP, code_version=RAW_CODE_VERSION)
def raw_transactions(
    context: AssetExecutionContext, config: RawTransactionsConfig, store: ArtifactStore
) -> Output[ArtifactRef]:
    """Card transactions with a fraud label: generated from a seed, or ingested from a file."""
    with timed() as t:
        if config.source_path:
            df = _read_source(config.source_path)
            source = str(Path(config.source_path).expanduser().resolve())
            context.log.info(f"read {len(df):,} rows from {source}")
        else:

            def progress(done: int, total: int) -> None:
                context.log.info(f"generated {done:,}/{total:,} rows")

            df = generate_transactions(
                config.rows, config.seed, config.fraud_rate, progress=progress
            )
            source = "generator"
        data = parquet_bytes(df)
        ref = store.content().put(
            "raw_transactions",
            data,
            ".parquet",
            code_version=RAW_CODE_VERSION,
            extra={"source": source, "rows": len(df)},
        )
    label_rate = (
        float(df[LABEL].mean())
        if LABEL in df.columns and pd.api.types.is_numeric_dtype(df[LABEL])
        else None
    )
    return hashed_output(
        ref,
        seeds={} if config.source_path else {"generator_seed": config.seed},
        wall_time_s=t["seconds"],
        metadata={
            "source": MetadataValue.text(source),
            "dagster/row_count": MetadataValue.int(len(df)),
            "columns": MetadataValue.int(len(df.columns)),
            "label_rate": MetadataValue.float(label_rate)
            if label_rate is not None
            else MetadataValue.text("n/a"),
            "preview": MetadataValue.md(df.head(5).to_markdown(index=False)),
        },
    )


def validation_record_path(store: ArtifactStore, ref: ArtifactRef) -> Path:
    return Path(store.base_dir) / "validations" / ref.asset / f"{ref.sha256}.json"


@asset_check(asset=raw_transactions, blocking=True, name="expectations")
def raw_transactions_expectations(
    context: AssetCheckExecutionContext, raw_transactions: ArtifactRef, store: ArtifactStore
) -> AssetCheckResult:
    """Great Expectations: schema and dtypes, nulls, value ranges, unique ids, label rate."""
    df = read_parquet_bytes(raw_transactions.read_verified())
    outcomes = validate_transactions(df)
    failed = [o for o in outcomes if not o.success]
    passed = not failed
    atomic_write(
        validation_record_path(store, raw_transactions),
        canonical_json(
            {
                "sha256": raw_transactions.sha256,
                "passed": passed,
                "failed": [o.__dict__ for o in failed],
            }
        ),
    )
    if failed:
        context.log.error(
            f"raw_transactions {raw_transactions.sha256[:12]} failed {len(failed)} of "
            f"{len(outcomes)} expectations; downstream assets will not run. Fix the source data "
            "and rematerialize raw_transactions."
        )
    rows = [
        {
            "expectation": o.expectation,
            "column": o.column,
            "ok": "yes" if o.success else "**NO**",
            "detail": o.detail,
        }
        for o in outcomes
    ]
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{len(outcomes)} expectations passed"
            if passed
            else f"{len(failed)} of {len(outcomes)} expectations failed: "
            + "; ".join(
                f"{o.column}: {o.expectation.removeprefix('expect_')} ({o.detail})"
                for o in failed[:5]
            )
        ),
        metadata={
            "evaluated": MetadataValue.int(len(outcomes)),
            "failed": MetadataValue.int(len(failed)),
            "data_sha256": MetadataValue.text(raw_transactions.sha256),
            "results": MetadataValue.md(md_table(rows)),
        },
    )


def require_validated(store: ArtifactStore, ref: ArtifactRef) -> None:
    """Refuse data whose expectations check has not passed (blocking only holds within a run)."""
    path = validation_record_path(store, ref)
    if not path.exists():
        raise Failure(
            f"{ref.asset} version {ref.sha256[:12]} has not been through its expectations check; "
            f"materialize {ref.asset} with its check first."
        )
    record = json.loads(path.read_text())
    if not record["passed"]:
        reasons = "; ".join(f"{f['column']}: {f['expectation']}" for f in record["failed"][:5])
        raise Failure(
            f"{ref.asset} version {ref.sha256[:12]} failed its expectations ({reasons}); "
            f"fix the source data and rematerialize {ref.asset}."
        )


class SplitConfig(Config):
    seed: int = Field(default=7, description="Seed of the stratified split.")
    valid_fraction: float = 0.15
    test_fraction: float = 0.15


@asset(group_name=GROUP, code_version=SPLITS_CODE_VERSION)
def training_splits(
    context: AssetExecutionContext,
    config: SplitConfig,
    store: ArtifactStore,
    raw_transactions: ArtifactRef,
) -> Output[ArtifactRef]:
    """A deterministic stratified train/valid/test split: one Parquet with a `split` column."""
    require_validated(store, raw_transactions)
    with timed() as t:
        df = read_parquet_bytes(raw_transactions.read_verified())
        holdout = config.valid_fraction + config.test_fraction
        try:
            train, rest = train_test_split(
                df, test_size=holdout, stratify=df[LABEL], random_state=config.seed
            )
            valid, test = train_test_split(
                rest,
                test_size=config.test_fraction / holdout,
                stratify=rest[LABEL],
                random_state=config.seed,
            )
        except ValueError as exc:
            raise Failure(
                f"cannot make a stratified split of raw_transactions: {exc}. Each class needs at "
                "least a few rows in every split; add data or lower the holdout fractions."
            ) from exc
        parts = []
        for name, part in (("train", train), ("valid", valid), ("test", test)):
            parts.append(part.sort_values("transaction_id").assign(split=name))
        out = pd.concat(parts, ignore_index=True)
        ref = store.content().put(
            "training_splits",
            parquet_bytes(out),
            ".parquet",
            code_version=SPLITS_CODE_VERSION,
            lineage=lineage_of(raw_transactions),
        )
    summary = (
        out.groupby("split", sort=False)[LABEL]
        .agg(rows="size", fraud="sum", fraud_rate="mean")
        .reset_index()
    )
    context.log.info(
        f"split {len(out):,} rows: "
        + ", ".join(f"{r.split}={r.rows:,}" for r in summary.itertuples())
    )
    return hashed_output(
        ref,
        upstream={"raw_transactions": raw_transactions},
        seeds={"split_seed": config.seed},
        wall_time_s=t["seconds"],
        metadata={
            "dagster/row_count": MetadataValue.int(len(out)),
            "splits": MetadataValue.md(md_table(summary.to_dict("records"))),
        },
    )


defs = Definitions(
    assets=[raw_transactions, training_splits], asset_checks=[raw_transactions_expectations]
)
