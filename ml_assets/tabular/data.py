"""A declared lineage's data: its source (generator or file) and its deterministic split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from ml_assets.platform.lineage_spec import Task

SPLITS = ("train", "valid", "test")


class SourceError(ValueError):
    """The dataset source could not produce a table; the message says what to fix."""


def read_table(path_str: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame, refusing missing, empty or unreadable files."""
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise SourceError(f"source_path {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise SourceError(f"source_path {path} is empty (0 bytes); nothing to ingest")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise SourceError(
            f"source_path {path}: unsupported file type {suffix!r}; use .csv/.parquet"
        )
    try:
        df = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as exc:
        raise SourceError(f"source_path {path} could not be read as {suffix[1:]}: {exc}") from exc
    if df.empty:
        raise SourceError(f"source_path {path} holds a header but no rows; nothing to ingest")
    return df


def generate(fn: Callable[[int, int], object], rows: int, seed: int, source: str) -> pd.DataFrame:
    """Call a lineage's generator `fn(rows, seed)` and insist on a non-empty DataFrame."""
    df = fn(rows, seed)
    if not isinstance(df, pd.DataFrame):
        raise SourceError(f"{source}(rows, seed) returned {type(df).__name__}, not a DataFrame")
    if df.empty:
        raise SourceError(f"{source}({rows}, {seed}) returned no rows")
    return df.reset_index(drop=True)


def split_frame(
    df: pd.DataFrame,
    *,
    label: str,
    task: Task,
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    id_column: str | None = None,
) -> pd.DataFrame:
    """train/valid/test as one frame with a `split` column; stratified for classification.

    Each part is sorted by the id column (or the row's position), so the bytes depend only on
    the data, the fractions and the seed.
    """
    holdout = valid_fraction + test_fraction
    frame = df.reset_index(drop=True)
    strat = frame[label] if task == "classification" else None
    try:
        train, rest = train_test_split(frame, test_size=holdout, stratify=strat, random_state=seed)
        valid, test = train_test_split(
            rest,
            test_size=test_fraction / holdout,
            stratify=rest[label] if task == "classification" else None,
            random_state=seed,
        )
    except ValueError as exc:
        raise SourceError(
            f"cannot split the data: {exc}. Every split needs rows (and, for classification, "
            "a few of each class): add data or lower the holdout fractions."
        ) from exc
    parts = []
    for name, part in zip(SPLITS, (train, valid, test), strict=True):
        ordered = part.sort_values(id_column, kind="stable") if id_column else part.sort_index()
        parts.append(ordered.assign(split=name))
    return pd.concat(parts, ignore_index=True)
