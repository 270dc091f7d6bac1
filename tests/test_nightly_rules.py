"""Nightly validation and smoke without a platform: the schedules, the load profile and the rules
that judge a night (first night, same bytes, parts that cannot be judged)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dagster import (
    AssetKey,
    Definitions,
    RunRequest,
    SkipReason,
    build_schedule_context,
)

from ml_assets.nightly import records, schedules
from ml_assets.nightly.schedules import nightly_smoke_schedule, nightly_validation_schedule
from tests.helpers import CATALOG

# ---- pure logic and schedules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "job"),
    [
        (nightly_validation_schedule, "nightly_validation_job"),
        (nightly_smoke_schedule, "nightly_smoke_job"),
    ],
)
def test_schedule_runs_the_day_that_ended(schedule, job):
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == job
    tick = datetime(2026, 11, 24, 2 if job == "nightly_validation_job" else 3, tzinfo=UTC)
    request = schedule(build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-11-23"
    assert request.run_key == f"{job}:2026-11-23"
    # Before the first complete day there is nothing to run.
    first = datetime(2026, 11, 1, 2, tzinfo=UTC)
    skip = schedule(build_schedule_context(scheduled_execution_time=first))
    assert isinstance(skip, SkipReason) and "no complete day" in skip.skip_message


def test_schedule_crons():
    assert nightly_validation_schedule.cron_schedule == "0 2 * * *"
    assert nightly_smoke_schedule.cron_schedule == "0 3 * * *"


def test_ops_and_schedules_definitions_load():
    from ml_assets.nightly import defs as ops
    from ml_assets.resources.defaults import resource_defs

    defs = Definitions.merge(ops.build_defs(CATALOG), schedules.defs, resource_defs(CATALOG))
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in ("nightly_validation", "nightly_smoke"):
        node = graph.get(AssetKey(key))
        assert node.group_name == "ops" and node.partitions_def == ops.DAILY
    assert ops.DAILY.timezone == "UTC"
    for name in ("nightly_validation_job", "nightly_smoke_job", "set_smoke_baseline_job"):
        assert defs.resolve_job_def(name)
    assert {s.name for s in defs.schedules} == {
        "nightly_validation_schedule",
        "nightly_smoke_schedule",
    }


def test_load_profile_shape():
    stages = records.load_profile(warmup_s=1, ramp_s=2, peak_s=4, cooldown_s=1)
    assert [(s.name, s.users) for s in stages] == [
        ("warm-up", 10),
        ("ramp", 50),
        ("peak", 100),
        ("cool-down", 10),
    ]
    assert stages[1].spawn_rate == pytest.approx(20.0)
    with pytest.raises(ValueError):
        records.load_profile(warmup_users=60)


STATS = {"requests": 1000, "failures": 0, "error_rate": 0.0, "p95_ms": 20.0}


@pytest.mark.parametrize(
    ("stats", "base_p95", "expected"),
    [
        (STATS, None, []),
        (STATS, 20.0, []),
        (STATS, 18.5, []),  # 20 <= 18.5 * 1.1
        (STATS, 18.0, ["p95 20.0 ms > baseline 18.0 ms"]),
        ({**STATS, "failures": 11, "error_rate": 0.011}, None, ["error rate 1.10% > 1%"]),
        ({**STATS, "failures": 10, "error_rate": 0.01}, 20.0, []),
        ({**STATS, "requests": 0}, 20.0, ["no requests completed"]),
    ],
)
def test_smoke_regressions(stats, base_p95, expected):
    baseline = None if base_p95 is None else {"endpoints": {"/v1/score": {"p95_ms": base_p95}}}
    found = records.smoke_regressions({"/v1/score": stats}, baseline)
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        assert e in f


def _model_part(pr_auc: float, **over) -> dict:
    part = {
        "status": "completed",
        "version": "fraud-detector@1",
        "gates": [],
        "lineage": {
            "onnx_sha256": "a" * 64,
            "report_sha256": "b" * 64,
            "raw": "raw",
            "raw_sha256": "c" * 64,
        },
        "limits": {
            "quality_delta": {"pr_auc": 0.02},
            "output_diff": 1e-4,
            "latency_regression": None,
        },
        "primary_metric": "pr_auc",
        "higher_is_better": True,
        "expectations": {"passed": True, "failed": []},
        "validated": {"onnx": {"pr_auc": 0.80}},
        "tonight": {
            "onnx": {"pr_auc": pr_auc},
            "relative_delta": {"pr_auc": 0.0},
            "max_abs_diff": 1e-7,
        },
    }
    return {**part, **over}


def _search_part(hybrid: float, vector: float, lexical: float) -> dict:
    return {
        "status": "completed",
        "version": "text-embedder@2",
        "gates": [],
        "lineage": {"embedder_sha256": "e" * 64, "report_sha256": "f" * 64},
        "thresholds": {"tolerance": 0.02},
        "validated": {"eval_ndcg_at_10": {"hybrid": 0.896, "vector": 0.85, "lexical": 0.80}},
        "tonight": {"eval_ndcg_at_10": {"hybrid": hybrid, "vector": vector, "lexical": lexical}},
    }


def _night(models: dict, search: dict, partition: str = "2026-11-30") -> dict:
    return {
        "schema": records.VALIDATION_SCHEMA,
        "partition": partition,
        "status": "completed",
        "models": models,
        "search": search,
    }


@pytest.mark.parametrize(
    ("fraud_pr_auc", "search", "expected"),
    [
        (0.80, (0.896, 0.85, 0.80), []),
        (0.79, (0.88, 0.84, 0.79), []),  # within 2% and within the tolerance
        (
            0.70,
            (0.896, 0.85, 0.80),
            ["ONNX pr_auc 0.7000 is 12.50% worse than 0.8000 in the validated report"],
        ),
        # The collapse: 0 in every mode, hybrid >= best single holds, no earlier night.
        (
            0.80,
            (0.0, 0.0, 0.0),
            ["hybrid nDCG@10 0.0000 < 0.8960", "vector nDCG@10 0.0000", "lexical nDCG@10 0.0000"],
        ),
    ],
)
def test_the_first_night_is_judged_on_the_validated_figures(fraud_pr_auc, search, expected):
    night = _night({"fraud": _model_part(fraud_pr_auc)}, _search_part(*search))
    found = records.validation_regressions(night, [])
    assert len(found) == len(expected), found
    for f, e in zip(found, expected, strict=True):
        assert e in f


def test_the_last_night_counts_only_for_the_same_bytes():
    better = _night({"fraud": _model_part(0.90)}, _search_part(0.99, 0.9, 0.8), "2026-11-29")
    tonight = _night({"fraud": _model_part(0.80)}, _search_part(0.896, 0.85, 0.80))
    found = records.validation_regressions(tonight, [better])
    assert any("worse than 0.9000 in the night 2026-11-29" in f for f in found), found
    assert any("dropped from 0.9900 on 2026-11-29" in f for f in found), found
    other = json.loads(json.dumps(better))
    other["models"]["fraud"]["lineage"]["onnx_sha256"] = "d" * 64
    other["search"]["lineage"]["embedder_sha256"] = "d" * 64
    assert records.validation_regressions(tonight, [other]) == []
    # A night of the earlier schema (before lineage records) is no yardstick.
    assert records.validation_regressions(tonight, [{**better, "schema": "v1"}]) == []


def test_a_part_that_cannot_be_judged_is_a_regression_with_its_reason():
    failed = {
        "status": "failed",
        "version": "text-embedder@2",
        "reason": "no live index",
        "gates": [{"name": "onnx_export", "passed": False, "detail": "never exported"}],
    }
    found = records.validation_regressions(_night({"fraud": _model_part(0.8)}, failed), [])
    assert found == [
        "search (text-embedder@2): no live index",
        "search (text-embedder@2) gate onnx_export: never exported",
    ]


def test_the_nights_table_as_a_verdict_strip_names_each_lineages_share_of_a_night():
    from urllib.parse import unquote

    from ml_assets.nightly.validation import verdict_rows
    from ml_assets.platform.inline_plots import INLINE_LIMIT, inline_verdicts

    def night(day: str, regressions: list[str], curves: bool = True) -> dict:
        models = {"fraud": {"version": "fraud-detector@1"}}
        if curves:
            models["curves"] = {"version": "curve-model@12"}
        return {
            "partition": day,
            "status": records.COMPLETED,
            "models": models,
            "search": {"version": "text-embedder@1"},
            "regressions": regressions,
        }

    nights = [
        night("2026-11-01", [], curves=False),
        night("2026-11-02", ["curve-model@12 parity: max |native - ONNX| 1e-2 > 1e-4"]),
        {"partition": "2026-11-03", "status": records.FAILED, "reason": "no bundle"},
        # fraud-detector@1 is a prefix of fraud-detector@12's label, not its version.
        night("2026-11-04", ["search (text-embedder@1): hybrid nDCG@10 0.4 < 0.5 - 0.01"]),
        night("2026-11-05", ["text-embedder@1: bundle abc pins another ONNX than the version's"]),
    ]
    rows = verdict_rows(nights)
    assert rows == {
        "night": [True, False, False, False, False],
        "curves": [None, False, None, True, True],
        "fraud": [True, True, None, True, True],
        "search": [True, True, None, False, False],
    }
    md = inline_verdicts("no_regression per night", rows, "2026-11-01", "2026-11-05")
    assert len(md) < INLINE_LIMIT
    assert "night 1/5, curves 2/3, fraud 4/4, search 2/4 passed" in md
    svg = unquote(md.split("svg+xml,", 1)[1].split(")", 1)[0])
    assert svg.count("stroke='#d62728'") == 1 and svg.count("stroke='#ccc'") == 1
    assert ">curves</text>" in svg


def test_a_verdict_strip_too_long_to_draw_keeps_the_newest_nights():
    from ml_assets.platform.inline_plots import INLINE_LIMIT, inline_verdicts

    rows = {f"lineage{i}": [(d + i) % 2 == 0 for d in range(14)] for i in range(5)}
    md = inline_verdicts("no_regression per night", rows, "2026-11-01", "2026-11-14")
    assert len(md) < INLINE_LIMIT and md.endswith("(last 10 drawn)")
    with pytest.raises(ValueError, match="same number"):
        inline_verdicts("x", {"a": [True], "b": []}, "d", "d")
