"""The one evidence rule (ml_assets/platform/evidence.py): which records count, and why not."""

from __future__ import annotations

import pytest

from ml_assets.platform.evidence import (
    EvidenceRule,
    Ignored,
    Origin,
    check_steps,
    step_of,
    verdict_problem,
)

RULE = EvidenceRule(
    jobs={
        "fraud_lineage_job": frozenset({"fraud/onnx", "fraud/export_validation_report:latency"}),
        "serving_job": frozenset({"serving_bundle"}),
    }
)
OK = Origin(
    run_id="r1" * 8,
    step="fraud__onnx",
    job="fraud_lineage_job",
    status="SUCCESS",
    location="ml_assets",
)


def test_step_names_follow_dagsters_op_names():
    assert step_of("fraud/onnx") == "fraud__onnx"
    assert step_of("my-model/raw_data") == "my_model__raw_data"
    assert check_steps("fraud/raw_data", "expectations") == (
        "fraud__raw_data",
        "fraud__raw_data_expectations",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"run_id": ""}, "runless"),
        ({"status": None}, "not in the instance"),
        ({"status": "FAILURE"}, "did not succeed (FAILURE)"),
        ({"status": "STARTED"}, "did not succeed (STARTED)"),
        ({"location": "someone_elses_location"}, "came from code location"),
        ({"job": "serving_job"}, "does not run it"),
        ({"job": "a_job_nobody_declared"}, "does not run it"),
        ({"step": None}, "is not fraud/onnx's"),
        ({"step": "fraud__model"}, "is not fraud/onnx's"),
    ],
)
def test_a_record_not_written_by_our_own_successful_step_is_ignored(change, reason):
    origin = Origin(**{**OK.to_dict(), **change})
    problem = RULE.judge("fraud/onnx", (step_of("fraud/onnx"),), origin)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "origin",
    [
        OK,
        # `dagster job execute -m ml_assets.definitions` names the module, not the location.
        Origin(**{**OK.to_dict(), "location": "ml_assets.definitions"}),
        # An in-process `materialize([...])` names neither, and runs an implicit asset job.
        Origin(**{**OK.to_dict(), "location": "", "job": "__ephemeral_asset_job__"}),
        # The UI's Materialize button.
        Origin(**{**OK.to_dict(), "job": "__ASSET_JOB"}),
    ],
)
def test_our_own_runs_count(origin):
    assert RULE.judge("fraud/onnx", (step_of("fraud/onnx"),), origin) is None


def test_without_a_job_list_declared_jobs_are_not_judged_but_the_rest_is():
    lenient = EvidenceRule()
    assert lenient.judge("fraud/onnx", ("fraud__onnx",), OK) is None
    assert "runless" in lenient.judge("fraud/onnx", ("fraud__onnx",), Origin(run_id=""))


def _verdict(**change):
    origin = {**OK.to_dict(), "step": "fraud__export_validation_report"}
    base = {
        "asset": "fraud/export_validation_report",
        "check": "latency",
        "passed": True,
        "evaluation_id": 7,
        "origin": origin,
    }
    return {**base, **change}


def test_the_service_judges_a_bundles_verdicts_by_the_same_rule():
    assert verdict_problem(_verdict()) is None
    assert verdict_problem(_verdict(passed=False)) == "not passed"
    assert "evaluation id" in verdict_problem(_verdict(evaluation_id=None))
    assert "no recorded origin" in verdict_problem(_verdict(origin=None))
    runless = _verdict(origin={**_verdict()["origin"], "run_id": ""})
    assert "runless" in verdict_problem(runless)
    failed = _verdict(origin={**_verdict()["origin"], "status": "FAILURE"})
    assert "did not succeed" in verdict_problem(failed)


def test_ignored_records_are_counted_once_per_record_and_per_reason():
    ignored = Ignored()
    for record_id in (1, 2, 2):
        ignored.add("fraud/onnx", "runless", record_id)
    ignored.add("curves/onnx", "runless", 3)
    assert ignored.lines(["fraud/onnx"]) == ["ignored 2 records of fraud/onnx: runless"]
    assert len(ignored.lines()) == 2
