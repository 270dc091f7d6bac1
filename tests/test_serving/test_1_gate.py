"""The promotion gate on two real fraud versions: unvalidated, worse than the champion, a failing
report beside a passing one, the lineage's own margin, the promotion event."""

from __future__ import annotations

import jsonschema
import pytest
from dagster import (
    AssetKey,
    materialize,
)

from ml_assets.platform import promotion
from ml_assets.platform.dagster_records import DagsterRecords
from tests.helpers import (
    CATALOG,
    FRAUD_ASSETS,
    ONNX,
    REPORT,
    fraud_asset,
    op,
)
from tests.test_serving.support import (
    EMBEDDER,
    FRAUD,
    _alias,
    _evaluate,
    _events,
    _gate_rows,
    _promote,
    _records_metric,
)

# ---- the gate -------------------------------------------------------------------------------


def test_gate_rejects_unvalidated_version_and_changes_nothing(platform):
    client = platform["client"]
    source = client.get_model_version(FRAUD, platform["fraud_a"])
    # A version registered straight through the MLflow client: no export, no validation.
    rogue = client.create_model_version(FRAUD, source.source, run_id=source.run_id)
    before_alias, before_events = _alias(platform, FRAUD), len(_events(platform))
    with pytest.raises(promotion.PromotionRejected) as err:
        _promote(platform, FRAUD, rogue.version)
    # Its run holds version A's validated bytes, but no export was recorded for this version.
    failed = {g.name for g in err.value.decision.gates if not g.passed}
    assert failed == {"onnx_export", "registry_hash"}, err.value.decision.table()
    assert "onnx_export" in str(err.value)
    assert _alias(platform, FRAUD) == before_alias
    assert len(_events(platform)) == before_events
    assert "promoted_by" not in client.get_model_version(FRAUD, rogue.version).tags


def test_gate_rejects_worse_than_champion(platform):
    # Both versions are validated; the champion comparison uses the records' PR-AUC.
    a, b = platform["fraud_a"], platform["fraud_b"]
    better, worse = (
        (a, b) if _records_metric(platform, a) > _records_metric(platform, b) else (b, a)
    )
    _promote(platform, FRAUD, better, reason="first champion")
    records = DagsterRecords(platform["instance"])
    decision = promotion.evaluate(
        platform["client"], FRAUD, worse, catalog=CATALOG, records=records, margin=0.0
    )
    assert [g.name for g in decision.gates if not g.passed] == ["champion"]
    with pytest.raises(promotion.PromotionRejected, match="champion"):
        _promote(platform, FRAUD, worse, margin=0.0)
    assert _alias(platform, FRAUD) == better
    with pytest.raises(ValueError, match="reason"):
        _promote(platform, FRAUD, better, reason=" ")
    with pytest.raises(ValueError, match="no version"):
        _promote(platform, FRAUD, "9999")
    if better != a:  # the rest of the module starts from version A in production
        _promote(platform, FRAUD, a, reason="module baseline", rollback=True)


def test_a_failing_report_beside_a_passing_one_keeps_the_version_admissible(platform):
    """A second report over the same bytes, from a run with a tightened threshold, fails its
    blocking check: the version stays admissible on the report that passed."""
    version = platform["fraud_b"]  # the newest export: what a report-only run reads
    before = _evaluate(platform, version).evidence.facts
    strict = materialize(
        FRAUD_ASSETS,
        selection=[fraud_asset("export_validation_report")],
        resources=platform["resources"],
        instance=platform["instance"],
        run_config={"ops": {op("export_validation_report"): {"config": {"max_output_diff": 0.0}}}},
        raise_on_error=False,
    )
    parity = [c for c in strict.get_asset_check_evaluations() if c.check_name == "output_parity"]
    assert parity and not parity[0].passed and not strict.success
    newest = (
        platform["instance"]
        .fetch_materializations(AssetKey.from_user_string(REPORT), limit=1)
        .records[0]
    )
    assert newest.run_id == strict.run_id
    upstream = newest.asset_materialization.metadata["upstream_data_versions"].value
    assert upstream[ONNX] == before["onnx_sha256"], "the strict report covers the same bytes"
    decision = _evaluate(platform, version)
    rows = _gate_rows(decision)
    assert rows["export_validation"].passed, decision.table()
    assert decision.evidence.facts["report_sha256"] == before["report_sha256"]
    assert "did not succeed (FAILURE)" in rows["evidence"].detail, rows["evidence"].detail


def test_promotion_margin_is_the_lineages_own_and_relative(platform):
    """The YAML's promotion_margin (relative) decides the champion gate; --margin overrides."""
    from dataclasses import replace

    records = DagsterRecords(platform["instance"])
    a, b = platform["fraud_a"], platform["fraud_b"]
    value = {v: _records_metric(platform, v) for v in (a, b)}
    assert value[a] != value[b], "two trainings with other seeds and params differ"
    better, worse = sorted((a, b), key=lambda v: -value[v])
    baseline = _alias(platform, FRAUD)
    _promote(platform, FRAUD, better, reason="margin test champion", rollback=True)
    needed = (value[better] - value[worse]) / abs(value[better])  # just admits the worse one
    declared = CATALOG.by_model(FRAUD)
    others = tuple(s for s in CATALOG.lineages if s is not declared)
    try:
        for margin, admitted in ((needed / 2, False), (needed * 2, True)):
            lineages = (*others, replace(declared, promotion_margin=margin))
            decision = promotion.evaluate(
                platform["client"],
                FRAUD,
                worse,
                catalog=replace(CATALOG, lineages=lineages),
                records=records,
            )
            gate = _gate_rows(decision)["champion"]
            assert gate.passed is admitted, gate.detail
            assert f"promotion_margin of lineage '{declared.name}'" in gate.detail
            assert decision.margin == margin
        # An explicit override (the CLI's --margin) wins over the declaration.
        decision = promotion.evaluate(
            platform["client"], FRAUD, worse, catalog=CATALOG, records=records, margin=needed / 2
        )
        gate = _gate_rows(decision)["champion"]
        assert not gate.passed and "explicit override" in gate.detail
    finally:
        _promote(platform, FRAUD, baseline, reason="module baseline", rollback=True)


def test_promotion_records_event_and_tags(platform):
    event = _promote(platform, EMBEDDER, platform["embedder"], reason="int8 passes parity")
    jsonschema.validate(event, promotion.event_schema())
    assert _alias(platform, EMBEDDER) == platform["embedder"]
    tags = platform["client"].get_model_version(EMBEDDER, platform["embedder"]).tags
    assert tags["promoted_by"] == "pytest" and tags["promotion_reason"] == "int8 passes parity"
    stored = [e for e in _events(platform) if e["event_id"] == event["event_id"]]
    assert stored == [event]
    assert {g["name"] for g in event["gates"]} >= {"fp32_parity", "int8_retrieval", "champion"}
