"""model_promotion_sensor's decision: pure, so every cursor transition is checked directly."""

from __future__ import annotations

import json

from ml_assets.bundle.promotion_sensor import decide

F, E = "fraud-detector", "text-embedder"
# What a bundle cannot be built without: the embedder and the /v1/score model (fraud's YAML).
NEEDS = frozenset({F, E})


def test_first_tick_requests_one_run_per_promoted_model():
    requests, cursor, skip = decide(None, {F: "3", E: "2"}, NEEDS)
    assert sorted(r.run_key for r in requests) == [f"{F}@3", f"{E}@2"] and skip is None
    assert json.loads(cursor)["aliases"] == {F: "3", E: "2"}


def test_no_move_no_run_and_cursor_kept():
    _, cursor, _ = decide(None, {F: "3", E: "2"}, NEEDS)
    requests, again, skip = decide(cursor, {F: "3", E: "2"}, NEEDS)
    assert requests == [] and again == cursor and "no production alias moved" in skip


def test_one_alias_moves():
    _, cursor, _ = decide(None, {F: "3", E: "2"}, NEEDS)
    requests, _, _ = decide(cursor, {F: "4", E: "2"}, NEEDS)
    assert [r.run_key for r in requests] == [f"{F}@4"]
    assert requests[0].tags["ml-assets/previous_version"] == "3"


def test_promote_rollback_promote_again_gets_a_fresh_run_key():
    _, c1, _ = decide(None, {F: "3", E: "2"}, NEEDS)
    r2, c2, _ = decide(c1, {F: "4", E: "2"}, NEEDS)
    r3, c3, _ = decide(c2, {F: "3", E: "2"}, NEEDS)
    r4, _, _ = decide(c3, {F: "4", E: "2"}, NEEDS)
    assert [r.run_key for r in r2 + r3 + r4] == [f"{F}@4", f"{F}@3#2", f"{F}@4#2"]


def test_waits_for_both_models_without_losing_the_move():
    requests, cursor, skip = decide(None, {F: "3", E: None}, NEEDS)
    assert requests == [] and E in skip
    requests, _, _ = decide(cursor, {F: "3", E: "1"}, NEEDS)
    # The embedder's first promotion triggers the bundle (which includes fraud v3).
    assert [r.run_key for r in requests] == [f"{E}@1"]


def test_waits_for_the_model_behind_v1_score_too():
    """The fraud lineage declares score_routes (its YAML): no bundle is built without it."""
    from tests.helpers import CATALOG

    assert CATALOG.bundle_needs() == NEEDS
    requests, cursor, skip = decide(None, {F: None, E: "2"}, NEEDS)
    assert requests == [] and F in skip
    requests, _, _ = decide(cursor, {F: "1", E: "2"}, NEEDS)
    assert [r.run_key for r in requests] == [f"{F}@1"]


# ---- the bundle follows validation (bundle/bundle_follow.py) ---------------------------------

from ml_assets.bundle.bundle_follow import Bundled  # noqa: E402
from ml_assets.bundle.promotion_sensor import decide_all  # noqa: E402


def _bundle(fraud: str = "3", embedder: str = "2", search: str | None = None) -> Bundled:
    return Bundled(versions={F: fraud, E: embedder}, embedder=E, embedder_sha256="e" * 64,
                   search=search)  # fmt: skip


def test_a_search_report_that_passes_after_the_bundle_was_built_rebuilds_it_once():
    production = {F: "3", E: "2"}
    # The first build was requested before any report passed: it carries none.
    _, cursor, _ = decide_all(None, production, None, {F: "k1", E: "k2"}, None, NEEDS)
    requests, cursor2, _ = decide_all(cursor, production, _bundle(), {}, "r1@7", NEEDS)
    assert [r.run_key for r in requests] == ["search:r1@7"]
    assert decide_all(cursor2, production, _bundle(), {}, "r1@7", NEEDS)[0] == []
    # Once rebuilt it carries r1; a newer passing report (r2) is followed again, once.
    assert decide_all(cursor2, production, _bundle(search="r1@7"), {}, "r1@7", NEEDS)[0] == []
    requests, _, _ = decide_all(cursor2, production, _bundle(search="r1@7"), {}, "r2@9", NEEDS)
    assert [r.run_key for r in requests] == ["search:r2@9"]


def test_a_move_whose_build_sees_the_report_is_not_followed_twice():
    production = {F: "3", E: "2"}
    moves, cursor, _ = decide_all(None, production, None, {F: "k1", E: "k2"}, "r1@7", NEEDS)
    assert sorted(r.run_key for r in moves) == [f"{F}@3", f"{E}@2"]
    # That build is still running (the bundle lags): nothing more to request.
    assert (
        decide_all(cursor, production, _bundle("1", "1"), {F: "k1", E: "k2"}, "r1@7", NEEDS)[0]
        == []
    )


def test_no_search_rebuild_while_the_bundle_lags_the_production_embedder():
    _, cursor, _ = decide_all(None, {F: "3", E: "2"}, None, {}, None, NEEDS)
    # The embedder moved to v3: the move's build brings the report; no second build for it.
    requests, _, _ = decide_all(cursor, {F: "3", E: "3"}, _bundle(), {E: "k3"}, "r3@11", NEEDS)
    assert [r.run_key for r in requests] == [f"{E}@3"]


def test_a_version_validated_after_its_alias_moved_is_bundled_once():
    _, cursor, _ = decide_all(None, {F: "3", E: "2"}, None, {}, "r1@7", NEEDS)
    # fraud v4 became production before its export validation passed: the build was refused.
    moved, cursor, _ = decide_all(
        cursor, {F: "4", E: "2"}, _bundle(search="r1@7"), {F: None}, "r1@7", NEEDS
    )
    assert [r.run_key for r in moved] == [f"{F}@4"]
    still, cursor, skip = decide_all(
        cursor, {F: "4", E: "2"}, _bundle(search="r1@7"), {F: None}, "r1@7", NEEDS
    )
    assert still == [] and "carries every passed check" in skip
    # Its checks pass now (evaluations 41, 42): one serving run, keyed by that evidence.
    passed, cursor, _ = decide_all(
        cursor, {F: "4", E: "2"}, _bundle(search="r1@7"), {F: "41,42"}, "r1@7", NEEDS
    )
    assert [r.run_key for r in passed] == [f"validated:{F}@4:41,42"]
    again, _, _ = decide_all(
        cursor, {F: "4", E: "2"}, _bundle(search="r1@7"), {F: "41,42"}, "r1@7", NEEDS
    )
    assert again == []
