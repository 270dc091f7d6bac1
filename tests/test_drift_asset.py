"""`fraud/inference_drift` materialized for real: the fraud lineage trained, validated and
promoted here, a day of traffic logged through the real inference log and request-id middleware
(scored by the production ONNX bytes), then the daily asset judged against the training split
the evidence rule finds. An undrifted day passes; a day whose amounts moved 3 sigma fails its
blocking check naming `amount`; a thin day is "not enough traffic"."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import prometheus_client as prom
import psycopg
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    materialize,
)
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ml_assets.lineages.fraud.generator import generate_transactions
from ml_assets.monitoring.drift_asset import CHECK, STAGE
from ml_assets.monitoring.inference_tables import log_table
from ml_assets.platform import promotion
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.inline_plots import INLINE_LIMIT
from ml_assets.platform.serving_bundle import ModelEntry
from ml_assets.resources.defaults import local_resources
from ml_assets.resources.storage import latest_ref
from ml_assets.tabular.scorer import OnnxTabularScorer
from serving.inference_log import InferenceLog, LogSettings
from serving.request_ids import RequestIds
from tests.conftest import TEST_ROWS
from tests.helpers import CATALOG, DEFS, FRAUD, FRAUD_ASSETS, run_config

SPEC = CATALOG.lineage(FRAUD)
NAMES = [f.name for f in SPEC.features]
TODAY = datetime.now(UTC).date()
# The asset the fraud component declares (ml_assets/lineages/fraud/defs.yaml), as deployed.
DRIFT = next(a for a in DEFS.assets if AssetKey([FRAUD, STAGE]) in getattr(a, "keys", ()))


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, mlflow_resource, vector_dsn):
    base = tmp_path_factory.mktemp("drift")
    (base / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(base / "dagster"))
    root = base / "artifacts"
    resources = local_resources(root, mlflow_resource, vector_dsn, base / "bentoml")
    run = materialize(
        FRAUD_ASSETS, resources=resources, instance=instance, run_config=run_config(TEST_ROWS)
    )
    assert run.success
    version = latest_ref(root, SPEC.asset("model")).extra["model_version"]
    client = mlflow_resource.client
    promotion.promote(
        client, vector_dsn, SPEC.registered_model, version, actor="pytest",
        reason="drift fixture", margin=1.0, catalog=CATALOG, records=DagsterRecords(instance),
    )  # fmt: skip
    onnx = latest_ref(root, SPEC.asset("onnx"))
    yield {
        "resources": resources,
        "instance": instance,
        "dsn": vector_dsn,
        "entry": ModelEntry(FRAUD, SPEC.registered_model, version, {"model.onnx": onnx.sha256}),
        "scorer": OnnxTabularScorer(onnx.read_verified(), SPEC.features, SPEC.task),
    }
    instance.dispose()


def _log_day(promoted, rows: list[dict], day) -> None:
    """Send `rows` as batch requests through the real log; move them to `day`."""
    log = InferenceLog(
        LogSettings(dsn=promoted["dsn"], sample_rate=1.0, retention_days=None),
        prom.CollectorRegistry(),
    )

    async def predict(request: Request) -> JSONResponse:
        batch = (await request.json())["rows"]
        outputs = promoted["scorer"].predict_records(batch)
        log.record(SPEC, promoted["entry"], batch, outputs)
        return JSONResponse({"predictions": [float(p) for p in outputs]})

    app = RequestIds(
        Starlette(routes=[Route("/v1/models/fraud/predict/batch", predict, methods=["POST"])])
    )
    ids = []
    try:
        with TestClient(app) as c:
            for i in range(0, len(rows), 100):
                r = c.post("/v1/models/fraud/predict/batch", json={"rows": rows[i : i + 100]})
                assert r.status_code == 200
                ids.append(r.headers["x-request-id"])
        deadline = time.monotonic() + 20
        while log.logged < len(rows) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.logged == len(rows) and log.dropped == 0
    finally:
        log.close()
    moved = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    with psycopg.connect(promoted["dsn"], autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET logged_at = %s WHERE request_id = ANY(%s)").format(
                sql.Identifier(log_table(FRAUD))
            ),
            (moved, ids),
        )


def _rows(n: int, seed: int, amount_shift: float = 0.0) -> list[dict]:
    frame = generate_transactions(max(n, 100), seed=seed).head(n)[NAMES]
    frame["amount"] = (frame["amount"] + amount_shift).clip(upper=50_000.0)
    return json.loads(frame.to_json(orient="records"))


def _run(promoted, day):
    return materialize(
        [DRIFT],
        partition_key=day.isoformat(),
        resources=promoted["resources"],
        instance=promoted["instance"],
        raise_on_error=False,
    )


def _judge(promoted, day):
    result = _run(promoted, day)
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == CHECK]
    (mat,) = result.get_asset_materialization_events()
    return check, mat.materialization.metadata


def test_an_undrifted_day_passes_and_records_what_it_compared(promoted, webhook):
    day = TODAY - timedelta(days=2)
    _log_day(promoted, _rows(600, seed=21), day)
    check, md = _judge(promoted, day)
    assert check.passed, check.description
    assert webhook == []  # no alert for a day that passes
    assert md["status"].value in ("ok", "warn") and md["rows"].value == 600
    assert md["onnx_sha256"].value == promoted["entry"].files["model.onnx"]
    assert len(md["splits_sha256"].value) == 64 and len(md["model_sha256"].value) == 64
    assert md["thresholds"].value == {"psi_warn": 0.1, "psi_fail": 0.25, "min_rows": 200}
    # The page reads verdict first, then tonight's PSI bars (every compared feature, under the
    # UI's inline limit), then the thresholds, then the figures and the provenance.
    keys = list(md)
    assert keys[0] == "verdict" and md["verdict"].value.startswith(f"{day.isoformat()}: every")
    assert keys.index("psi_plot") < keys.index("thresholds") < keys.index("rows")
    assert keys.index("rows") < keys.index("sha256") and keys[-1] == "environment"
    bars = md["psi_plot"].value
    assert bars.startswith("![PSI per feature](data:image/svg+xml,") and len(bars) < INLINE_LIMIT
    compared = [n for n in NAMES if n != "distance_from_home_km"]  # sensitive: hashes only
    assert set(md["psi"].value) == set(compared) and all(n in bars for n in compared)
    assert "psi_fail 0.25 (red)" in bars


def test_amount_shifted_three_sigma_fails_the_check_naming_amount(promoted, webhook):
    day = TODAY - timedelta(days=1)
    sigma = generate_transactions(TEST_ROWS, seed=7)["amount"].std()
    _log_day(promoted, _rows(600, seed=22, amount_shift=3 * sigma), day)
    check, md = _judge(promoted, day)
    assert not check.passed and "amount" in check.description
    assert md["failed_features"].value == ["amount"]
    (sent,) = webhook  # the alert webhook fired, naming the feature
    assert sent["event"] == "ml.inference_drift.fail" and sent["reasons"][0].startswith("amount:")
    assert sent["partition"] == day.isoformat()


def test_a_thin_day_is_not_enough_traffic_not_a_pass(promoted):
    day = TODAY - timedelta(days=3)
    _log_day(promoted, _rows(50, seed=23), day)
    check, md = _judge(promoted, day)
    assert not check.passed and check.description.startswith("not enough traffic")
    assert md["status"].value == "not enough traffic"


def test_the_trend_reads_the_earlier_nights_back_failed_ones_included_runless_ones_not(promoted):
    # Nights a week back, judged in order; the other tests' nights come after this window.
    first, drifted, last = (TODAY - timedelta(days=d) for d in (7, 6, 5))
    sigma = generate_transactions(TEST_ROWS, seed=7)["amount"].std()
    _log_day(promoted, _rows(300, seed=31), first)
    _log_day(promoted, _rows(300, seed=32, amount_shift=3 * sigma), drifted)
    _log_day(promoted, _rows(300, seed=33), last)
    # A "night" reported through the instance API, with no run: never part of the trend.
    fake = (TODAY - timedelta(days=8)).isoformat()
    promoted["instance"].report_runless_asset_event(
        AssetMaterialization(
            DRIFT.key,
            partition=fake,
            metadata={"night": {"status": "fail", "max_psi": 9.9, "worst_feature": "amount"}},
        )
    )
    _, md = _judge(promoted, first)
    assert "psi_trend_plot" not in md  # one night judged: nothing to draw a line through
    assert list(md["psi_trend"].value) == [first.isoformat()]
    # The blocking check fails the drifted night's run; the night still counts.
    assert not _run(promoted, drifted).success
    check, md = _judge(promoted, last)
    assert check.passed
    nights = md["psi_trend"].value
    assert list(nights) == [first.isoformat(), drifted.isoformat(), last.isoformat()]
    assert nights[drifted.isoformat()]["status"] == "fail"
    assert nights[drifted.isoformat()]["worst_feature"] == "amount"
    assert nights[drifted.isoformat()]["max_psi"] > 0.25 > nights[last.isoformat()]["max_psi"]
    trend = md["psi_trend_plot"].value
    assert trend.startswith("![PSI, 14 nights](data:image/svg+xml,") and len(trend) < INLINE_LIMIT
    assert "3 of 14 judged" in trend and "largest PSI (blue), psi_fail (red)" in trend
    keys = list(md)
    assert keys.index("verdict") < keys.index("psi_plot") < keys.index("psi_trend_plot")
    assert keys.index("psi_trend_plot") < keys.index("thresholds")


def test_the_scheduled_job_runs_each_lineages_drift_and_retention_a_failure_stays_alone(promoted):
    # What inference_monitoring_schedule's run request runs, for a day without traffic. The
    # curves lineage was never promoted here: its night is "not served", a warning, and the
    # day without traffic fails fraud's drift alone.
    day = (TODAY - timedelta(days=9)).isoformat()
    job = DEFS.resolve_job_def("inference_monitoring_job")
    result = job.execute_in_process(
        partition_key=day,
        resources=promoted["resources"],
        instance=promoted["instance"],
        raise_on_error=False,
    )
    ok = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert ok == {
        "fraud__inference_log_retention",
        "curves__inference_log_retention",
        "curves__inference_drift",
    }
    assert failed == {"fraud__inference_drift"}
    (curves,) = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.asset_key == AssetKey(["curves", "inference_drift"])
    ]
    assert not curves.passed and curves.severity == AssetCheckSeverity.WARN
    assert "has no production version" in curves.description
    fraud_drift = [
        m.materialization
        for m in result.get_asset_materialization_events()
        if m.materialization.asset_key == DRIFT.key
    ]
    assert fraud_drift[0].metadata["status"].value == "not enough traffic"
    assert fraud_drift[0].partition == day
