"""Asset pages for people: metadata ordered verdict → headline → plots → checks → provenance →
environment (ml_assets/platform/provenance.py), and plots small enough for the UI to show inline."""

from __future__ import annotations

import re
from urllib.parse import unquote

import numpy as np
import pytest
from dagster import MetadataValue

from ml_assets.platform.artifacts import ContentStore
from ml_assets.platform.inline_plots import INLINE_LIMIT, inline_bars, inline_plot
from ml_assets.platform.provenance import hashed_output, people_first


def test_people_first_puts_each_key_in_its_place_and_keeps_order_within_a_place():
    given = {
        "environment": 6,
        "sha256": 5,
        "report": 4,
        "thresholds": 3,
        "latency_plot": 2,
        "headline": 1,
        "native_roc_auc": 4,
        "pr_curve_plot": 2,
        "verdict": 0,
        "lineage": 5,
    }
    ordered = list(people_first(given))
    assert ordered == [
        "verdict",
        "headline",
        "latency_plot",
        "pr_curve_plot",
        "thresholds",
        "report",
        "native_roc_auc",
        "sha256",
        "lineage",
        "environment",
    ]


def test_hashed_output_shows_the_assets_figures_before_its_provenance(tmp_path):
    ref = ContentStore(tmp_path).put("a/b", b"bytes", ".bin", code_version="a/b@1")
    out = hashed_output(
        ref,
        wall_time_s=1.5,
        metadata={
            "rows": MetadataValue.int(3),
            "verdict": MetadataValue.text("PASSED"),
            "headline": MetadataValue.md("| m |\n|---|\n| 1 |"),
        },
    )
    keys = list(out.metadata)
    assert keys[:3] == ["verdict", "headline", "rows"]
    assert keys.index("rows") < keys.index("sha256") < keys.index("wall_time_s")
    assert keys[-1] == "environment"


@pytest.mark.parametrize("n", [5, 300, 20_000])
def test_an_inline_plot_fits_the_uis_inline_limit_and_draws_every_series(n: int):
    rng = np.random.default_rng(0)
    xs = np.sort(rng.random(n)).tolist()
    series = {"native": (xs, rng.random(n).tolist()), "ONNX": (xs, rng.random(n).tolist())}
    md = inline_plot("latency", series, "percentile", "ms")
    assert len(md) < INLINE_LIMIT
    assert md.startswith("![latency](data:image/svg+xml,")
    svg = unquote(md.split("svg+xml,", 1)[1].split(")", 1)[0])
    assert svg.startswith("<svg xmlns='http://www.w3.org/2000/svg'") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and "#" not in md.split(")", 1)[0]
    assert "native (blue), ONNX (red)" in md


def test_too_many_series_for_an_inline_plot_is_an_error_not_a_clipped_plot():
    xs = list(range(100))
    series = {f"s{i}": (xs, [float(i * x % 7) for x in xs]) for i in range(12)}
    with pytest.raises(ValueError, match="1 to 4 series, not 12"):
        inline_plot("crowded", series, "x", "y")
    long_names = {"x" * 300 + str(i): (xs, xs) for i in range(4)}
    with pytest.raises(ValueError, match="do not fit"):
        inline_plot("long legend", long_names, "x", "y")


def _svg_of(md: str) -> str:
    return unquote(md.split("svg+xml,", 1)[1].split(")", 1)[0])


def test_search_modes_per_labelled_set_are_grouped_bars_that_fit_inline():
    from ml_assets.components.search_index.validation import modes_plot

    verdicts = {
        "search": {"lexical": 0.41, "vector": 0.52, "hybrid": 0.55, "best_single": 0.52},
        "docs": {"lexical": 0.61, "vector": 0.49, "hybrid": 0.66, "best_single": 0.61},
    }
    md = modes_plot(verdicts)
    assert len(md) < INLINE_LIMIT
    svg = _svg_of(md)
    assert svg.startswith("<svg xmlns='http://www.w3.org/2000/svg'") and svg.endswith("</svg>")
    # One path of bars per mode (plus the axis), one bar per set in each, each set named.
    bars = [p for p in svg.split("<path d='")[1:] if "fill='#" in p]
    assert len(bars) == 3 and all(b.split("'")[0].count("z") == 2 for b in bars)
    assert ">search</text>" in svg and ">docs</text>" in svg
    assert "lexical (blue), vector (red), hybrid (green)" in md
    assert "docs: lexical 0.610, vector 0.490, hybrid 0.660" in md
    # The tallest bar (docs hybrid) reaches the top padding; a bar's height scales with its value.
    heights = [[int(h) for h in re.findall(r"v-(\d+)", b)] for b in bars]
    assert heights[2][1] == max(max(h) for h in heights)
    assert heights[0][0] < heights[1][0] < heights[2][0]


@pytest.mark.parametrize("sets", [1, 2, 4, 6])
def test_grouped_bars_stay_under_the_inline_limit_or_refuse(sets: int):
    groups = {f"set{i}": {"lexical": 0.3, "vector": 0.5, "hybrid": 0.6} for i in range(sets)}
    if sets <= 4:
        md = inline_bars("modes", groups, "nDCG@10")
        assert len(md) < INLINE_LIMIT and _svg_of(md).count("</text>") == sets
    else:
        with pytest.raises(ValueError, match="do not fit inline"):
            inline_bars("modes", groups, "nDCG@10")


def test_grouped_bars_refuse_mismatched_groups_and_negative_values():
    with pytest.raises(ValueError, match="every group must have"):
        inline_bars("x", {"a": {"p": 1.0, "q": 2.0}, "b": {"q": 1.0, "p": 2.0}}, "y")
    with pytest.raises(ValueError, match="negative"):
        inline_bars("x", {"a": {"p": -1.0}}, "y")
