"""Nightly validation and smoke on the real platform: a real load run against `bentoml serve`,
the regression checks, the webhook alert, and failed nights recorded as failed (the schedules
and the rules of a night: tests/test_nightly_rules.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    MetadataValue,
    materialize,
)

from ml_assets.bundle.serving_process import start_server
from ml_assets.components.search_index.assets import embedding_index, search_corpus
from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
from ml_assets.components.search_index.validation import search_quality_report
from ml_assets.nightly import records as nightly
from ml_assets.nightly.defs import (
    nightly_dir,
    nightly_smoke,
    nightly_validation,
    set_smoke_baseline_job,
)
from ml_assets.platform import promotion
from ml_assets.platform.dagster_records import DagsterRecords
from ml_assets.platform.inline_plots import INLINE_LIMIT
from ml_assets.resources import MlflowResource
from ml_assets.resources.defaults import local_resources
from tests.conftest import TEST_ROWS
from tests.helpers import (
    CATALOG,
    EMBEDDER_MODEL,
    FRAUD_ASSETS,
    FRAUD_MODEL,
    RAW,
    SPLITS,
    failure_text,
    materialize_shipped_curves,
    promoted_and_bundled,
    run_config,
    search_state_dsn,  # noqa: F401  (fixture `vector_dsn`)
)
from tests.helpers import materialized_ref as _ref

LINEAGE = [
    *FRAUD_ASSETS,
    search_corpus,
    embedding_model_onnx,
    embedding_index,
    search_quality_report,
]
# ~7 s of load: the production shape (10 → 50 → 100 users → 10), compressed.
SHORT = {
    "warmup_s": 1.5,
    "ramp_s": 2.0,
    "peak_s": 3.0,
    "cooldown_s": 1.0,
    "workers": 1,
}


# ---- fixtures: the real platform ------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory, mlflow_resource: MlflowResource, search_state):
    """The fraud lineage on a copy of the session's search chain, both models promoted, and
    the production Bento built."""
    home = tmp_path_factory.mktemp("nightly_bentoml")
    platform = promoted_and_bundled(search_state, mlflow_resource, home, "nightly fixture", 1.0)
    platform["tag"] = _ref(platform["root"], "serving_bundle").extra["bento_tag"]
    return platform


def _record(platform, asset: str, key: str) -> dict:
    return json.loads(
        (nightly_dir(platform["resources"]["store"], asset) / f"{key}.json").read_text()
    )


def _run(platform, asset, key: str, config: dict | None = None, resources=None):
    return materialize(
        [asset],
        partition_key=key,
        resources=resources or platform["resources"],
        instance=platform["instance"],
        run_config={"ops": {asset.op.name: {"config": config or {}}}},
        raise_on_error=False,
    )


def _check(result):
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


# ---- nightly validation ---------------------------------------------------------------------


def test_reports_nobody_ran_neither_fail_the_night_nor_enter_it(platform, webhook):
    """Runless reports over production's bytes (what the webserver's REST API writes) are the
    newest records, yet the night validates production on its own runs' records."""
    instance = platform["instance"]
    fraud = _production(platform, FRAUD_MODEL)
    onnx_sha = fraud.tags["onnx_sha256"]
    embedder_sha = _production(platform, EMBEDDER_MODEL).tags["sha256"]
    for asset, metadata in (
        ("fraud/export_validation_report", {"upstream_data_versions": {"fraud/onnx": onnx_sha}}),
        ("search_quality_report", {"embedder_sha256": embedder_sha, "search_config": {}}),
    ):
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=AssetKey.from_user_string(asset),
                tags={"dagster/data_version": "0" * 64},
                metadata={k: MetadataValue.json(v) for k, v in metadata.items()},
            )
        )
    night_run = _run(platform, nightly_validation, "2026-11-19")
    assert night_run.success, failure_text(night_run)
    assert _check(night_run).passed
    night = _record(platform, "nightly_validation", "2026-11-19")
    assert night["status"] == "completed" and night["regressions"] == []
    assert night["models"]["fraud"]["lineage"]["report_sha256"] != "0" * 64
    assert night["search"]["lineage"]["report_sha256"] != "0" * 64
    assert not webhook


def test_nightly_validation_passes_then_catches_a_regression(platform, webhook):
    first = _run(platform, nightly_validation, "2026-11-20")
    assert first.success, failure_text(first)
    assert _check(first).passed
    night = _record(platform, "nightly_validation", "2026-11-20")
    assert night["status"] == "completed" and night["regressions"] == []
    fraud, search = night["models"]["fraud"], night["search"]
    assert fraud["expectations"]["passed"] and fraud["expectations"]["evaluated"] > 10
    assert fraud["tonight"]["max_abs_diff"] <= fraud["limits"]["output_diff"]
    assert fraud["tonight"]["onnx"] == pytest.approx(fraud["validated"]["onnx"])
    assert search["tonight"]["eval_ndcg_at_10"] == pytest.approx(
        search["validated"]["eval_ndcg_at_10"]
    )
    assert search["coverage"]["missing_documents"] == 0
    assert search["lineage"]["report_from"] == "serving bundle"
    md = first.get_asset_materialization_events()[0].materialization.metadata
    assert md["trend"].value.startswith("![nightly validation trend](data:image/png;base64,")
    assert fraud["lineage"]["report_sha256"] in md["lineage_records"].value
    assert not webhook

    # A doctored earlier night that was much better: tonight is a regression against it.
    doctored = json.loads(json.dumps(night))
    doctored["partition"] = "2026-11-21"
    onnx = doctored["models"]["fraud"]["tonight"]["onnx"]
    onnx["pr_auc"] = min(1.0, onnx["pr_auc"] * 1.5)
    doctored["search"]["tonight"]["eval_ndcg_at_10"]["hybrid"] += 0.1
    store_dir = nightly_dir(platform["resources"]["store"], "nightly_validation")
    (store_dir / "2026-11-21.json").write_text(json.dumps(doctored))
    second = _run(platform, nightly_validation, "2026-11-22")
    assert not second.success
    check = _check(second)
    assert not check.passed
    reasons = check.metadata["regressions"].value
    assert any("pr_auc" in r and "night 2026-11-21" in r for r in reasons), reasons
    assert any("hybrid nDCG@10" in r and "2026-11-21" in r for r in reasons), reasons
    assert "blocking" in failure_text(second)
    assert _record(platform, "nightly_validation", "2026-11-22")["regressions"] == reasons
    # The nights as a chart, inline: the two earlier nights passed, tonight did not.
    plot = second.get_asset_materialization_events()[0].materialization.metadata["nights_plot"]
    # (The module's earlier tests may have recorded nights before 2026-11-20.)
    assert len(plot.value) < INLINE_LIMIT and " to 2026-11-22, rows top to bottom" in plot.value
    for row in ("night", "fraud", "search"):  # every earlier night passed, tonight failed
        passed, judged = map(int, re.search(rf"\b{row} (\d+)/(\d+)", plot.value).groups())
        assert judged >= 3 and passed == judged - 1, plot.value
    (alert,) = webhook
    assert alert["event"] == "ml.nightly.regression" and alert["partition"] == "2026-11-22"


def test_nightly_validation_without_its_records_is_a_failed_night(platform, tmp_path):
    resources = {**platform["resources"]}
    resources.update(local_resources(tmp_path, platform["resources"]["mlflow"]))
    result = _run(platform, nightly_validation, "2026-11-20", resources=resources)
    assert not result.success
    # The records name the served bundle and the validated report by sha256; this store never
    # held their bytes (which one the night meets first depends on whether a bundle is recorded).
    text = failure_text(result)
    missing = re.search(
        r"(serving_bundle|export_validation_report): no stored file with sha256", text
    )
    assert missing, text
    night = json.loads(
        (tmp_path / "nightly" / "nightly_validation" / "2026-11-20.json").read_text()
    )
    assert night["status"] == "failed" and missing.group(1) in night["reason"]


# ---- the production version's own lineage --------------------------------------------------


def _production(platform, name: str):
    return platform["resources"]["mlflow"].client.get_model_version_by_alias(name, "production")


def test_a_strict_failed_run_moves_nothing_the_night_validates(platform, capsys):
    """The issue's sequence: a second fraud run with max_output_diff 1e-12 fails output_parity
    (never promoted); the night still validates production on production's own records."""
    root, prod = platform["root"], _production(platform, FRAUD_MODEL)
    strict = materialize(
        FRAUD_ASSETS,
        resources=platform["resources"],
        instance=platform["instance"],
        run_config=run_config(
            TEST_ROWS, seed=8, export_validation_report={"config": {"max_output_diff": 1e-12}}
        ),
        raise_on_error=False,
    )
    assert not strict.success
    parity = [e for e in strict.get_asset_check_evaluations() if e.check_name == "output_parity"]
    assert parity and not parity[0].passed
    latest_raw = _ref(root, RAW).sha256
    assert latest_raw != prod.tags[f"{RAW}_sha256"]  # "latest" is the strict run's

    result = _run(platform, nightly_validation, "2026-11-30")
    assert result.success, failure_text(result)
    night = _record(platform, "nightly_validation", "2026-11-30")
    fraud = night["models"]["fraud"]
    assert fraud["version"] == f"{FRAUD_MODEL}@{prod.version}"
    assert fraud["thresholds"]["max_output_diff"] == 1e-4  # what validated production
    assert fraud["lineage"]["raw_sha256"] == prod.tags[f"{RAW}_sha256"]
    assert fraud["lineage"]["splits_sha256"] == prod.tags[f"{SPLITS}_sha256"]
    assert fraud["lineage"]["onnx_sha256"] == prod.tags["onnx_sha256"]
    assert fraud["expectations"]["passed"]
    assert night["regressions"] == [], night["regressions"]
    table = result.get_asset_materialization_events()[0].materialization.metadata
    assert prod.tags[f"{RAW}_sha256"] in table["lineage_records"].value
    assert latest_raw not in table["lineage_records"].value
    with capsys.disabled():
        print(f"\nnightly_validation 2026-11-30 records:\n{table['lineage_records'].value}")


def _user_corpus(path: Path) -> Path:
    """A user's own corpus (known tenants, unrelated documents) that replaces the live index."""
    from ml_assets.search.corpus import known_tenants

    rows = [
        {
            "id": f"user-{t}-{i:03d}",
            "tenant_id": t,
            "type": "document",
            "title": f"Quarterly facilities memo {i}",
            "text": f"Office move, parking permits and canteen opening hours, note {i} for {t}.",
            "tags": ["facilities"],
            "updated_at": "2026-11-29T09:00:00Z",
        }
        for t in known_tenants()
        for i in range(8)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _reindex(platform, source_path: str | None, variant: str = "int8") -> None:
    config = {} if source_path is None else {"source_path": source_path}
    assert materialize(
        LINEAGE,
        selection=["search_corpus", "embedding_index"],
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={
            "ops": {
                "search_corpus": {"config": config},
                "embedding_index": {"config": {"variant": variant}},
            }
        },
    ).success


def test_a_replaced_live_index_fails_the_search_part_on_the_first_night(platform, tmp_path):
    _reindex(platform, str(_user_corpus(tmp_path / "user.jsonl")))
    try:
        # 2026-11-02: no night before it, so nothing but the validated records can judge it.
        result = _run(platform, nightly_validation, "2026-11-02")
    finally:
        _reindex(platform, None)
    assert not result.success
    night = _record(platform, "nightly_validation", "2026-11-02")
    search = night["search"]
    assert search["status"] == "failed" and "tonight" not in search
    assert "no longer holds what the labelled queries were written for" in search["reason"]
    assert "relevant documents" in search["reason"]
    assert any(r.startswith("search (") and "no longer holds" in r for r in night["regressions"])
    assert night["models"]["fraud"]["status"] == "completed"
    md = result.get_asset_materialization_events()[0].materialization.metadata
    assert "hybrid_ndcg_at_10" not in md and "no longer holds" in md["search_failed"].value


def test_a_collapsed_index_is_caught_on_the_first_night(platform, vector_dsn):
    """Every document carries another document's vector (as a broken re-embed would leave it):
    the hashes still match, the figures do not, and only the validated report can tell."""
    import psycopg
    from psycopg import sql

    from ml_assets.search.index import live_index

    with psycopg.connect(vector_dsn, autocommit=True) as conn:
        table = sql.Identifier("search", live_index(conn)["table_name"])
        conn.execute(
            sql.SQL(
                "CREATE TABLE search.nightly_backup AS SELECT tenant_id, doc_id, embedding FROM {}"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "UPDATE {t} AS d SET embedding = s.other FROM (SELECT tenant_id, doc_id,"
                " lead(embedding, 7) OVER (ORDER BY doc_id) AS other FROM {t}) s"
                " WHERE d.tenant_id = s.tenant_id AND d.doc_id = s.doc_id AND s.other IS NOT NULL"
            ).format(t=table)
        )
        try:
            result = _run(platform, nightly_validation, "2026-11-01")
        finally:
            conn.execute(
                sql.SQL(
                    "UPDATE {} AS d SET embedding = b.embedding FROM search.nightly_backup b"
                    " WHERE d.tenant_id = b.tenant_id AND d.doc_id = b.doc_id"
                ).format(table)
            )
            conn.execute("DROP TABLE search.nightly_backup")
    assert not result.success
    night = _record(platform, "nightly_validation", "2026-11-01")
    assert night["search"]["status"] == "completed"
    reasons = night["regressions"]
    assert any("vector nDCG@10" in r and "of the validated report" in r for r in reasons), reasons
    assert all("night 20" not in r for r in reasons)  # judged on the validated figures alone


def test_an_index_built_with_another_embedder_fails_the_search_part(platform):
    _reindex(platform, None, variant="fp32")
    try:
        result = _run(platform, nightly_validation, "2026-11-03")
    finally:
        _reindex(platform, None)
    assert not result.success
    search = _record(platform, "nightly_validation", "2026-11-03")["search"]
    assert search["status"] == "failed" and "tonight" not in search
    assert "holds vectors of embedder" in search["reason"]
    assert search["lineage"]["index"]["embedder_sha256"] != search["lineage"]["embedder_sha256"]


CURVES = "curve-forecaster"


@pytest.fixture
def curves_in_production(platform):
    """The declared curves lineage (ml_assets/lineages/curves) materialized and promoted here;
    the alias is dropped afterwards (the registry is shared by the session, the records are
    this module's)."""
    run = materialize_shipped_curves(platform["resources"], platform["instance"])
    assert run.success
    client = platform["resources"]["mlflow"].client
    version = str(max(int(v.version) for v in client.search_model_versions(f"name='{CURVES}'")))
    promotion.promote(
        client,
        platform["resources"]["postgres"].dsn,
        CURVES,
        version,
        actor="pytest",
        reason="nightly: a declared lineage in production",
        margin=1.0,
        catalog=CATALOG,
        records=DagsterRecords(platform["instance"]),
    )
    try:
        yield version
    finally:
        client.delete_registered_model_alias(CURVES, "production")


def test_a_declared_lineage_is_validated_on_its_own_records(platform, curves_in_production):
    result = _run(platform, nightly_validation, "2026-12-01")
    assert result.success, failure_text(result)
    night = _record(platform, "nightly_validation", "2026-12-01")
    curves = night["models"]["curves"]
    assert curves["version"] == f"{CURVES}@{curves_in_production}"
    assert curves["status"] == "completed" and curves["primary_metric"] == "mae"
    assert curves["thresholds"] == CATALOG.by_model(CURVES).thresholds
    assert curves["expectations"]["passed"] and curves["tonight"]["test_rows"] > 0
    assert curves["tonight"]["onnx"] == pytest.approx(curves["validated"]["onnx"])
    assert curves["bundle"] == {"pins": None}  # promoted, not yet bundled: recorded as such
    assert night["regressions"] == []


# ---- nightly smoke --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(platform):
    """The production Bento, served once for the runs that target a URL."""
    proc = start_server(platform["tag"], bentoml_home=platform["home"], workers=1)
    with proc:
        proc.wait_ready(timeout_s=120)
        yield proc.url


def test_nightly_smoke_serves_the_bento_and_records_percentiles(platform, capsys):
    result = _run(platform, nightly_smoke, "2026-11-20", SHORT)
    assert result.success, failure_text(result)
    check = _check(result)
    assert check.passed and "no p95 baseline" in check.description
    night = _record(platform, "nightly_smoke", "2026-11-20")
    assert night["status"] == "completed" and night["bento_tag"] == platform["tag"]
    assert [s["users_reached"] for s in night["stages"]][:3] == [10, 50, 100]
    for name in nightly.ENDPOINTS:
        stats = night["endpoints"][name]
        assert stats["requests"] > 0 and stats["error_rate"] <= 0.01, night["errors"]
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    md = result.get_asset_materialization_events()[0].materialization.metadata
    with capsys.disabled():
        print(f"\nnightly smoke {night['wall_s']:.1f} s:\n{md['results'].value}")

    adopt = set_smoke_baseline_job.execute_in_process(
        run_config={
            "ops": {
                "adopt_smoke_baseline": {
                    "config": {"partition": "2026-11-20", "reason": "first night", "actor": "qa"}
                }
            }
        },
        resources={"store": platform["resources"]["store"]},
        instance=platform["instance"],
    )
    assert adopt.success
    baseline = json.loads(
        (nightly_dir(platform["resources"]["store"], "nightly_smoke") / "baseline.json").read_text()
    )
    assert baseline["partition"] == "2026-11-20" and baseline["set_by"] == "qa"
    assert baseline["reason"] == "first night" and baseline["endpoints"] == night["endpoints"]


def test_smoke_regression_fails_the_run_and_alerts(platform, served, webhook):
    store_dir = nightly_dir(platform["resources"]["store"], "nightly_smoke")
    tiny = {
        "schema": nightly.BASELINE_SCHEMA,
        "partition": "2026-11-19",
        "endpoints": {e: {"p95_ms": 0.01} for e in nightly.ENDPOINTS},
    }
    (store_dir / "baseline.json").write_text(json.dumps(tiny))
    result = _run(
        platform,
        nightly_smoke,
        "2026-11-21",
        {**SHORT, "target_url": served, "warmup_s": 1.0, "peak_s": 1.5, "ramp_s": 1.0},
    )
    assert not result.success
    check = _check(result)
    assert not check.passed
    reasons = check.metadata["regressions"].value
    assert {r.split(":")[0] for r in reasons} == set(nightly.ENDPOINTS)
    assert all("> baseline 0.0 ms" in r for r in reasons), reasons
    night = _record(platform, "nightly_smoke", "2026-11-21")
    assert night["status"] == "completed" and night["regressions"] == reasons
    assert night["target"] == served
    (alert,) = webhook
    assert alert["event"] == "ml.nightly.regression" and alert["reasons"] == reasons


def test_server_that_never_starts_is_a_failed_night(platform, webhook):
    result = _run(platform, nightly_smoke, "2026-11-22", {**SHORT, "bento_tag": "nope:missing"})
    assert not result.success
    text = failure_text(result)
    assert "recorded as failed" in text and "did not become ready" in text
    night = _record(platform, "nightly_smoke", "2026-11-22")
    assert night["status"] == "failed" and "nope:missing" in night["reason"]
    assert not result.get_asset_materialization_events()
    (alert,) = webhook
    assert alert["event"] == "ml.nightly.failed" and "nope:missing" in alert["reasons"][0]
    # A failed night cannot become the baseline.
    adopt = set_smoke_baseline_job.execute_in_process(
        run_config={
            "ops": {"adopt_smoke_baseline": {"config": {"partition": "2026-11-22", "reason": "no"}}}
        },
        resources={"store": platform["resources"]["store"]},
        instance=platform["instance"],
        raise_on_error=False,
    )
    assert not adopt.success and "cannot be a baseline" in failure_text(adopt)


def test_unreachable_target_is_a_regression_not_a_pass(platform):
    result = _run(
        platform,
        nightly_smoke,
        "2026-11-23",
        {**SHORT, "target_url": "http://127.0.0.1:9", "warmup_s": 1.0, "peak_s": 1.0},
    )
    assert not result.success
    reasons = _check(result).metadata["regressions"].value
    assert any("error rate 100.00%" in r for r in reasons), reasons
