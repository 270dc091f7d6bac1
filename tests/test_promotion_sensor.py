"""model_promotion_sensor's decision: pure, so every cursor transition is checked directly."""

from __future__ import annotations

import json

from ml_assets.sensors.promotion import decide

F, E = "fraud-detector", "text-embedder"


def test_first_tick_requests_one_run_per_promoted_model():
    requests, cursor, skip = decide(None, {F: "3", E: "2"})
    assert sorted(r.run_key for r in requests) == [f"{F}@3", f"{E}@2"] and skip is None
    assert json.loads(cursor)["aliases"] == {F: "3", E: "2"}


def test_no_move_no_run_and_cursor_kept():
    _, cursor, _ = decide(None, {F: "3", E: "2"})
    requests, again, skip = decide(cursor, {F: "3", E: "2"})
    assert requests == [] and again == cursor and "no production alias moved" in skip


def test_one_alias_moves():
    _, cursor, _ = decide(None, {F: "3", E: "2"})
    requests, _, _ = decide(cursor, {F: "4", E: "2"})
    assert [r.run_key for r in requests] == [f"{F}@4"]
    assert requests[0].tags["ml-assets/previous_version"] == "3"


def test_promote_rollback_promote_again_gets_a_fresh_run_key():
    _, c1, _ = decide(None, {F: "3", E: "2"})
    r2, c2, _ = decide(c1, {F: "4", E: "2"})
    r3, c3, _ = decide(c2, {F: "3", E: "2"})
    r4, _, _ = decide(c3, {F: "4", E: "2"})
    assert [r.run_key for r in r2 + r3 + r4] == [f"{F}@4", f"{F}@3#2", f"{F}@4#2"]


def test_waits_for_both_models_without_losing_the_move():
    requests, cursor, skip = decide(None, {F: "3", E: None})
    assert requests == [] and E in skip
    requests, _, _ = decide(cursor, {F: "3", E: "1"})
    # The embedder's first promotion triggers the bundle (which includes fraud v3).
    assert [r.run_key for r in requests] == [f"{E}@1"]


def test_waits_for_the_model_behind_v1_score_too():
    """The fraud lineage declares score_routes (its YAML): no bundle is built without it."""
    import ml_assets.definitions  # noqa: F401  (loads the defs folder: registers the lineages)

    requests, cursor, skip = decide(None, {F: None, E: "2"})
    assert requests == [] and F in skip
    requests, _, _ = decide(cursor, {F: "1", E: "2"})
    assert [r.run_key for r in requests] == [f"{F}@1"]
