"""What is served is what was validated, however the alias moved; evidence nobody can forge or
poison (runless records, the webserver's REST API)."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    MetadataValue,
    materialize,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ml_assets.platform import promotion
from ml_assets.platform.dagster_records import DATA_VERSION_TAG, DagsterRecords
from ml_assets.platform.hashing import sha256_bytes
from ml_assets.platform.serving_bundle import PRODUCTION_ALIAS
from tests.helpers import (
    CATALOG,
    FRAUD_ASSETS,
    MODEL,
    ONNX,
    REPORT,
    dagster_webserver,
    failure_text,
    op,
)
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    API_KEY,
    FRAUD,
    RETRAIN,
    _gate_rows,
    _move_alias_and_refuse,
    _register_perturbed,
    _sensor_tick,
    _served,
    _serving_run,
)

# ---- integrity: what is served is what was validated, however the alias moved ------------------


def test_alias_moved_by_any_client_is_gated_where_models_are_served(
    server, platform, monkeypatch, webhook
):
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    cursor = _sensor_tick(platform, None).cursor
    client = platform["client"]
    assert _served(server.url)["fraud"][0] == f"{FRAUD}@{platform['fraud_b']}"

    # (a) A version whose export validation failed its blocking output_parity check.
    strict = materialize(
        FRAUD_ASSETS,
        selection=RETRAIN,
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={
            "ops": {
                op("model"): {"config": {"seed": 13, "params": {"max_iter": 100}}},
                op("export_validation_report"): {"config": {"max_output_diff": 1e-12}},
            }
        },
        raise_on_error=False,
    )
    parity = [c for c in strict.get_asset_check_evaluations() if c.check_name == "output_parity"]
    assert parity and not parity[0].passed
    failed_version = _ref(platform["root"], MODEL).extra["model_version"]
    cursor, event = _move_alias_and_refuse(platform, server, failed_version, cursor, webhook)
    assert "export_validation" in event["failed"]

    # (b) A version registered by a plain client: a perturbed ONNX file, its onnx_sha256 tag
    # rewritten to match, and export_validation=passed.
    forged, perturbed = _register_perturbed(platform, platform["fraud_b"])
    cursor, event = _move_alias_and_refuse(platform, server, forged, cursor, webhook)
    assert "onnx_export" in event["failed"]
    assert event["evidence"]["onnx_sha256"] == sha256_bytes(perturbed)

    # A valid move (a plain client again) is served, with the verdicts it was let in by.
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, platform["fraud_a"])
    tick = _sensor_tick(platform, cursor)
    assert [r.tags["ml-assets/promoted_version"] for r in tick.run_requests] == [
        platform["fraud_a"]
    ]
    assert _serving_run(platform).success
    served = _served(server.url)
    assert served["fraud"][0] == f"{FRAUD}@{platform['fraud_a']}"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        gate = c.get("/models").json()["models"]["fraud"]["gate"]
    assert gate["approved"] and {v["check"] for v in gate["verdicts"]} == {
        "expectations",
        "quality_delta",
        "output_parity",
        "latency",
    }
    assert all(v["passed"] and v["run_id"] and v["evaluation_id"] for v in gate["verdicts"])


# ---- evidence nobody can forge or poison ------------------------------------------------------

REPORT_CHECKS = ("quality_delta", "output_parity", "latency")


def _bentos(platform) -> set[str]:
    return {p.name for p in (platform["home"] / "bentos" / "ml-assets").iterdir()}


def _newest(instance, asset: str):
    return instance.fetch_materializations(AssetKey.from_user_string(asset), limit=1).records[0]


def test_records_forged_with_the_instance_api_admit_nothing(server, platform, monkeypatch, webhook):
    """The issue's finding 1: a perturbed version, runless records of its export, a report over
    it and three passed check evaluations; then the alias moved to it."""
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    instance, client = platform["instance"], platform["client"]
    served = _served(server.url)
    validated = served["fraud"][0].split("@")[1]
    cursor = _sensor_tick(platform, None).cursor
    version, perturbed = _register_perturbed(platform, validated)
    sha = sha256_bytes(perturbed)
    real = _newest(instance, REPORT).asset_materialization
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey.from_user_string(ONNX),
            tags={DATA_VERSION_TAG: sha},
            metadata={"registered_model": f"{FRAUD} v{version}"},
        )
    )
    upstream = {**real.metadata["upstream_data_versions"].value, ONNX: sha}
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=AssetKey.from_user_string(REPORT),
            tags={DATA_VERSION_TAG: sha256_bytes(b"a forged report")},
            metadata={**real.metadata, "upstream_data_versions": MetadataValue.json(upstream)},
        )
    )
    forged = _newest(instance, REPORT)
    assert forged.run_id == ""
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=forged.storage_id, run_id="", timestamp=forged.timestamp
    )
    for check in REPORT_CHECKS:
        instance.report_runless_asset_event(
            AssetCheckEvaluation(
                asset_key=AssetKey.from_user_string(REPORT),
                check_name=check,
                passed=True,
                target_materialization_data=target,
            )
        )

    decision = promotion.evaluate(
        client, FRAUD, version, catalog=CATALOG, records=DagsterRecords(instance)
    )
    rows = _gate_rows(decision)
    assert not decision.approved
    assert not rows["onnx_export"].passed and not rows["export_validation"].passed
    evidence = rows["evidence"].detail
    for asset in (ONNX, REPORT):  # other tests of this module may have left runless ones too
        assert re.search(rf"ignored \d+ records? of {asset}: runless", evidence), evidence

    bentos = _bentos(platform)
    _, event = _move_alias_and_refuse(platform, server, version, cursor, webhook)
    assert {"onnx_export", "export_validation"} <= set(event["failed"])
    assert _bentos(platform) == bentos, "a refused version must not get a Bento"
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, validated)


@pytest.fixture
def webserver(platform, tmp_path):
    """A real dagster-webserver on the module's instance (its unauthenticated REST API)."""
    with dagster_webserver(platform["instance"].root_directory, tmp_path / "webserver.log") as url:
        yield url


def test_a_report_posted_to_the_webservers_rest_api_blocks_nothing(
    server, platform, webserver, monkeypatch, webhook
):
    """The issue's finding 2: one unauthenticated POST of a report over production's bytes
    (and a failed check) must neither keep the validated version out nor admit anything."""
    monkeypatch.setenv("ML_SERVING_URL", server.url)
    monkeypatch.setenv("ML_SERVING_API_KEY", API_KEY)
    instance, client = platform["instance"], platform["client"]
    served = _served(server.url)
    validated, production_sha = served["fraud"][0].split("@")[1], served["fraud"][1]
    posted = httpx.post(
        f"{webserver}/report_asset_materialization/{REPORT}",
        json={
            "data_version": sha256_bytes(b"poison"),
            "metadata": {"upstream_data_versions": {ONNX: production_sha}},
        },
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    failed = httpx.post(
        f"{webserver}/report_asset_check/{REPORT}",
        json={"check_name": "quality_delta", "passed": False},
        timeout=30,
    )
    assert failed.status_code == 200, failed.text
    assert _newest(instance, REPORT).run_id == "", "the poison is the newest report"

    decision = promotion.evaluate(
        client, FRAUD, validated, catalog=CATALOG, records=DagsterRecords(instance)
    )
    assert decision.approved, decision.table()
    evidence = _gate_rows(decision)["evidence"].detail
    assert re.search(rf"ignored \d+ records? of {REPORT}: runless", evidence), evidence

    # A refusal, then the alias moved back to the validated version: it is bundled and served.
    cursor = _sensor_tick(platform, None).cursor
    refused, _ = _register_perturbed(platform, validated)
    cursor, _ = _move_alias_and_refuse(platform, server, refused, cursor, webhook)
    client.set_registered_model_alias(FRAUD, PRODUCTION_ALIAS, validated)
    tick = _sensor_tick(platform, cursor)
    # The validated version becomes production a second time here: its run key says so.
    assert [r.run_key for r in tick.run_requests] == [f"{FRAUD}@{validated}#2"]
    run = _serving_run(platform)
    assert run.success, failure_text(run)
    assert _served(server.url)["fraud"] == served["fraud"]
    # The bundle this run built keeps, for each verdict, the run, job, step and evaluation it
    # came from, and what the rule ignored (the endpoint already served these bytes: it keeps
    # its generation, and /models the gate record of the bundle it was loaded from).
    manifest = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
    gate = manifest["models"]["fraud"]["gate"]
    for verdict in gate["verdicts"]:
        origin = verdict["origin"]
        assert origin["run_id"] and origin["status"] == "SUCCESS", verdict
        assert origin["job"] and origin["step"] and verdict["evaluation_id"] is not None
    assert any("runless" in line for line in gate["records_ignored"]), gate["records_ignored"]
