"""The drift page's pieces without a platform: PSI bars that fit the UI's inline limit whatever
the number of features, coloured against the warn and fail lines, and the 14-night window."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from ml_assets.monitoring.drift_pages import night_summary, psi_bars, trend, window
from ml_assets.platform.inline_plots import INLINE_LIMIT, inline_threshold_bars
from ml_assets.platform.lineage_spec import MonitoringSpec

LIMITS = MonitoringSpec(psi_warn=0.1, psi_fail=0.25)
LINES = {"psi_warn": 0.1, "psi_fail": 0.25}


def _svg(md: str) -> str:
    return unquote(md.split("svg+xml,", 1)[1].split(")", 1)[0])


def test_bars_are_coloured_by_the_lines_they_cross_largest_first():
    md = inline_threshold_bars(
        "PSI per feature", {"hour": 0.02, "amount": 0.4, "mcc": 0.15}, LINES, "PSI"
    )
    svg = _svg(md)
    assert svg.count("stroke='steelblue'") == svg.count("stroke='red' stroke-width") == 1
    assert svg.count("stroke-dasharray") == 2  # the warn and the fail line
    assert "left to right: amount 0.4, mcc 0.15, hour 0.02" in md
    assert "dashed: psi_warn 0.1 (orange), psi_fail 0.25 (red)" in md
    assert len(md) < INLINE_LIMIT and "#" not in md.split(")", 1)[0]


@pytest.mark.parametrize("n", [1, 10, 40, 300])
def test_bars_fit_the_inline_limit_and_say_when_only_the_largest_are_shown(n: int):
    psis = {f"a_rather_long_feature_name_{i}": i / 100 for i in range(n)}
    md = inline_threshold_bars("PSI per feature", psis, LINES, "PSI")
    assert len(md) < INLINE_LIMIT
    shown = _svg(md).count("M")  # one stroke per bar, two for the lines
    assert shown - 2 <= n
    if shown - 2 < n:
        assert f"(the largest {shown - 2} of {n})" in md
    assert f"a_rather_long_feature_name_{n - 1} " in md  # the largest is always named


def test_bars_need_a_bar_and_at_most_two_lines():
    with pytest.raises(ValueError, match="at least one bar"):
        inline_threshold_bars("empty", {}, LINES, "PSI")
    with pytest.raises(ValueError, match="1 to 2 reference lines, not 3"):
        inline_threshold_bars("crowded", {"a": 1.0}, {"x": 1, "y": 2, "z": 3}, "PSI")


def test_a_night_without_compared_features_has_no_bars_and_no_largest_psi():
    thin = {"status": "not enough traffic", "features": {}}
    assert psi_bars(thin, LIMITS) is None
    assert night_summary(thin) == {
        "status": "not enough traffic",
        "max_psi": None,
        "worst_feature": None,
    }
    hashed_only = {"status": "ok", "features": {"zip": {"psi": None}, "amount": {"psi": 0.05}}}
    assert night_summary(hashed_only)["worst_feature"] == "amount"


def test_the_window_is_fourteen_nights_ending_tonight_never_before_the_first_partition():
    assert window("2026-12-06") == [f"2026-11-{d}" for d in range(23, 31)] + [
        f"2026-12-0{d}" for d in range(1, 7)
    ]
    assert window("2026-11-03") == ["2026-11-01", "2026-11-02", "2026-11-03"]


def test_the_trend_skips_unjudged_nights_and_needs_two_to_draw():
    tonight = {"status": "ok", "max_psi": 0.05, "worst_feature": "amount"}
    plot, nights = trend("2026-12-06", tonight, {}, LIMITS)
    assert plot is None and list(nights) == ["2026-12-06"]
    earlier = {
        "2026-11-20": {"status": "fail", "max_psi": 0.9},  # outside the window
        "2026-11-30": {"status": "not enough traffic", "max_psi": None},
        "2026-12-01": {"status": "fail", "max_psi": 0.4},
    }
    plot, nights = trend("2026-12-06", tonight, earlier, LIMITS)
    assert list(nights) == ["2026-11-30", "2026-12-01", "2026-12-06"]
    assert "2 of 14 judged, 2026-11-23 to 2026-12-06" in plot and len(plot) < INLINE_LIMIT
