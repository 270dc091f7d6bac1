"""model_promotion_sensor → serving_bundle: one run per alias move, a verified Bento, a rebuild when
a newer search report passes, the validation the sensor finds in the records."""

from __future__ import annotations

import json
from pathlib import Path

from dagster import materialize

from ml_assets.bundle.assets import (
    serving_bundle,
    serving_bundle_smoke,
)
from ml_assets.platform.dagster_records import DagsterRecords
from tests.helpers import CATALOG, RAW
from tests.helpers import materialized_ref as _ref
from tests.test_serving.support import (
    EMBEDDER,
    FRAUD,
    _sensor_tick,
)

# ---- sensor → bundle ------------------------------------------------------------------------


def test_sensor_requests_one_run_per_move_and_keeps_its_cursor(platform):
    result = _sensor_tick(platform, None)
    keys = sorted(r.run_key for r in result.run_requests)
    assert keys == [f"{FRAUD}@{platform['fraud_a']}", f"{EMBEDDER}@{platform['embedder']}"]
    # The next tick (or a restarted daemon, which reads the stored cursor) sees no move.
    again = _sensor_tick(platform, result.cursor)
    assert not again.run_requests and again.cursor == result.cursor
    platform["sensor_cursor"] = result.cursor


def test_serving_bundle_builds_a_verified_bento(platform):
    result = materialize(
        [serving_bundle, serving_bundle_smoke],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata["results"].value
    md = result.get_asset_materialization_events()[0].materialization.metadata
    tag = md["bento_tag"].value
    assert Path(md["dockerfile"].value).exists()
    manifest = json.loads(_ref(platform["root"], "serving_bundle").read_verified())
    assert manifest["models"]["fraud"]["version"] == platform["fraud_a"]
    assert manifest["models"]["fraud"]["provenance"][0]["asset"] == RAW
    bento_dir = Path(md["bento_path"].value)
    assert json.loads((bento_dir / "src" / "serving" / "bundle.json").read_text()) == manifest
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements
    assert "torch" not in requirements and "scikit-learn" not in requirements
    platform["bento_tag"] = tag


def test_a_search_report_that_passes_after_the_bundle_was_built_rebuilds_it_once(platform):
    """The bundle follows validation (issue 27): a newer passing search_quality_report for the
    served embedder makes model_promotion_sensor request serving_job, exactly once."""
    from ml_assets.components.search_index.assets import embedding_index, search_corpus
    from ml_assets.components.search_index.embedder_assets import embedding_model_onnx
    from ml_assets.components.search_index.validation import search_quality_report

    first = _sensor_tick(platform, None)  # the bundle's own builds, and the evidence they saw
    quiet = _sensor_tick(platform, first.cursor)
    assert not quiet.run_requests and "carries every passed check" in quiet.skip_reason.skip_message
    upstream = [a.to_source_asset() for a in (embedding_model_onnx, search_corpus, embedding_index)]
    report = materialize(
        [*upstream, search_quality_report],
        resources=platform["resources"],
        instance=platform["instance"],
    )
    assert report.success
    (evaluation,) = [e for e in report.get_asset_check_evaluations() if e.passed]
    tick = _sensor_tick(platform, first.cursor)
    (request,) = tick.run_requests
    assert request.run_key.startswith("search:") and request.job_name in (None, "serving_job")
    # A restarted daemon (the old cursor) asks for the same run key, which Dagster skips; the
    # stored cursor asks for nothing more.
    assert [r.run_key for r in _sensor_tick(platform, first.cursor).run_requests] == [
        request.run_key
    ]
    assert not _sensor_tick(platform, tick.cursor).run_requests
    assert evaluation.check_name == "hybrid_not_worse"


def test_the_validation_of_a_version_is_found_by_the_sensor_in_the_records(platform):
    """What model_promotion_sensor follows for a production version the bundle lacks: the
    passing evaluations of its chain, looked up by the sha256 its registry tags name."""
    from ml_assets.bundle.bundle_follow import validation_key

    records, client = DagsterRecords(platform["instance"]), platform["client"]
    for name, version in ((FRAUD, platform["fraud_b"]), (EMBEDDER, platform["embedder"])):
        tags = dict(client.get_model_version(name, version).tags)
        key = validation_key(records, CATALOG.by_model(name), name, version, tags)
        assert key and all(part.isdigit() for part in key.split(",")), (name, key)
    tags = dict(client.get_model_version(FRAUD, platform["fraud_b"]).tags)
    never = {**tags, "onnx_sha256": "0" * 64}  # bytes this platform never exported
    spec = CATALOG.by_model(FRAUD)
    assert validation_key(records, spec, FRAUD, platform["fraud_b"], never) is None
