"""Great Expectations suites generated from a declared lineage's schema (in-memory context).

For each feature: the column exists, has the declared type, holds no nulls, and stays in its
range or category set. The label exists, is non-null and (classification) is 0/1, its mean
(the positive rate) within declared bounds; the id column, when declared, is unique; the
table has a minimum row count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ml_assets.platform.lineage_spec import FeatureSpec, Task

GX_TYPES = {
    "int": ["int64", "int32", "int16", "int8", "Int64", "Int32"],
    "float": ["float64", "float32", "int64", "int32", "Float64"],
    "category": ["object", "str", "string", "StringDtype"],
}


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    detail: str


def outcome_detail(result: object) -> str:
    """What a failed (or unevaluable) expectation observed, in one line."""
    res = getattr(result, "result", {}) or {}
    exc = getattr(result, "exception_info", {}) or {}
    if exc.get("raised_exception"):
        msg = str(exc.get("exception_message", "")).splitlines()[0][:160]
        return f"could not be evaluated: {msg}"
    parts = []
    if "observed_value" in res:
        parts.append(f"observed {res['observed_value']}")
    if res.get("unexpected_count"):
        parts.append(
            f"{res['unexpected_count']} unexpected ({res.get('unexpected_percent', 0):.3g}%)"
        )
        sample = res.get("partial_unexpected_list") or []
        if sample:
            parts.append(f"e.g. {sample[:3]}")
    return "; ".join(parts)


def run_suite(df: pd.DataFrame, name: str, expectations: list[object]) -> list[ExpectationOutcome]:
    """Validate `df` against `expectations`; failures first, then by column."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": df})
    )
    outcome = batch.validate(gx.ExpectationSuite(name=name, expectations=expectations))
    outcomes = []
    for r in outcome.results:
        cfg = r.expectation_config
        column = str(cfg.kwargs.get("column", "(table)"))
        detail = outcome_detail(r)
        if not r.success and column != "(table)" and column not in df.columns:
            detail = "column is missing"
        outcomes.append(
            ExpectationOutcome(
                expectation=cfg.type, column=column, success=bool(r.success), detail=detail
            )
        )
    return sorted(outcomes, key=lambda o: (o.success, o.column, o.expectation))


def validate_frame(
    df: pd.DataFrame,
    features: Sequence[FeatureSpec],
    *,
    label: str,
    task: Task,
    id_column: str | None = None,
    min_rows: int = 1,
    label_rate: tuple[float, float] | None = None,
    name: str = "lineage",
) -> list[ExpectationOutcome]:
    """Run the suite generated from the schema over `df`; one outcome per expectation."""
    import great_expectations.expectations as gxe

    exps: list[object] = [gxe.ExpectTableRowCountToBeBetween(min_value=min_rows)]
    for f in features:
        exps.append(gxe.ExpectColumnToExist(column=f.name))
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=GX_TYPES[f.kind]))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.kind == "category":
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.categories))
            )
        elif f.min is not None or f.max is not None:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=f.min, max_value=f.max)
            )
    exps.append(gxe.ExpectColumnToExist(column=label))
    exps.append(gxe.ExpectColumnValuesToNotBeNull(column=label))
    if task == "classification":
        exps.append(gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]))
        if label_rate is not None:
            lo, hi = label_rate
            exps.append(gxe.ExpectColumnMeanToBeBetween(column=label, min_value=lo, max_value=hi))
    else:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=label, type_list=GX_TYPES["float"]))
    if id_column:
        exps.append(gxe.ExpectColumnToExist(column=id_column))
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=id_column))
        exps.append(gxe.ExpectColumnValuesToBeUnique(column=id_column))
    return run_suite(df, name.replace("/", "_"), exps)
