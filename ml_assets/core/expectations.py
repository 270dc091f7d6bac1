"""The Great Expectations suite for the transaction data, run on an in-memory context."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from ml_assets.core.fraud_data import LABEL, LABEL_RATE_BOUNDS, SCHEMA

MIN_ROWS = 1_000
_GX_TYPES = {
    "int": ["int64", "int32", "int16", "int8", "Int64", "Int32"],
    "float": ["float64", "float32", "int64", "int32", "Float64"],
    "str": ["object", "str", "string", "StringDtype"],
}


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    detail: str


def _suite() -> list[object]:
    import great_expectations.expectations as gxe

    exps: list[object] = [gxe.ExpectTableRowCountToBeBetween(min_value=MIN_ROWS)]
    for col in SCHEMA:
        exps.append(gxe.ExpectColumnToExist(column=col.name))
        exps.append(
            gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=_GX_TYPES[col.kind])
        )
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min is not None or col.max is not None:
            exps.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col.name, min_value=col.min, max_value=col.max
                )
            )
    exps.append(gxe.ExpectColumnValuesToBeUnique(column="transaction_id"))
    exps.append(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=[0, 1]))
    lo, hi = LABEL_RATE_BOUNDS
    exps.append(gxe.ExpectColumnMeanToBeBetween(column=LABEL, min_value=lo, max_value=hi))
    return exps


def _detail(result: object) -> str:
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


def validate_transactions(df: pd.DataFrame) -> list[ExpectationOutcome]:
    """Run the suite; one outcome per expectation, in suite order."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("transactions")
        .add_dataframe_asset("raw_transactions")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": df})
    )
    suite = gx.ExpectationSuite(name="raw_transactions", expectations=_suite())
    outcome = batch.validate(suite)
    outcomes = []
    for r in outcome.results:
        cfg = r.expectation_config
        column = str(cfg.kwargs.get("column", "(table)"))
        detail = _detail(r)
        if not r.success and column != "(table)" and column not in df.columns:
            detail = "column is missing"
        outcomes.append(
            ExpectationOutcome(
                expectation=cfg.type, column=column, success=bool(r.success), detail=detail
            )
        )
    return sorted(outcomes, key=lambda o: (o.success, o.column, o.expectation))
