"""Plots small enough to show on a Dagster asset page without a click.

The installed Dagster UI (dagster-webserver 1.13.27, `ui-core/src/metadata/MetadataEntry.tsx`
in its source map) renders a Markdown metadata value inline only while the string is under
1,000 characters, and behind "[Show Markdown]" otherwise; its Markdown sanitizer
(`ui-core/src/ui/MarkdownWithPlugins.tsx`) allows `data:` image sources. A matplotlib PNG as
base64 is tens of kilobytes, so it is always behind the click. These plots are tiny SVG line
charts in a `data:` URI, downsampled until the whole Markdown fits the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

INLINE_LIMIT = 1000  # the UI's threshold for rendering Markdown metadata inline
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
W, H, PAD = 200, 100, 4


def _scale(values: Sequence[float], lo: float, hi: float, size: int, flip: bool) -> list[int]:
    span = (hi - lo) or 1.0
    out = [round(PAD + (v - lo) / span * (size - 2 * PAD)) for v in values]
    return [size - v for v in out] if flip else out


def _downsample(xs: Sequence[float], ys: Sequence[float], n: int) -> tuple[list, list]:
    if len(xs) <= n:
        return list(xs), list(ys)
    idx = sorted({round(i * (len(xs) - 1) / (n - 1)) for i in range(n)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _svg(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], points: int) -> str:
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    x_lo, x_hi, y_lo, y_hi = min(xs_all), max(xs_all), min(ys_all), max(ys_all)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='{W * 2}'>",
        f"<path d='M{PAD} {PAD}V{H - PAD}H{W - PAD}' fill='none' stroke='#999'/>",
    ]
    for color, (xs, ys) in zip(COLORS, series.values(), strict=False):
        xs, ys = _downsample(xs, ys, points)
        px, py = _scale(xs, x_lo, x_hi, W, False), _scale(ys, y_lo, y_hi, H, True)
        # Commas only (SVG allows them between pairs too): a space costs three characters here.
        pairs = [
            p
            for i, p in enumerate(zip(px, py, strict=True))
            if i == 0 or p != (px[i - 1], py[i - 1])
        ]
        coords = ",".join(f"{a},{b}" for a, b in pairs)
        parts.append(f"<polyline points='{coords}' fill='none' stroke='{color}'/>")
    parts.append("</svg>")
    return "".join(parts)


def inline_plot(
    title: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    x_label: str,
    y_label: str,
) -> str:
    """Markdown: a line chart (one line per series, colours in order) and a one-line caption,
    under the UI's inline limit."""
    if not 0 < len(series) <= len(COLORS):
        raise ValueError(
            f"{title}: an inline plot draws 1 to {len(COLORS)} series, not {len(series)}"
        )
    lo = [min(ys) for _, ys in series.values()]
    hi = [max(ys) for _, ys in series.values()]
    legend = ", ".join(
        f"{name} ({('blue', 'red', 'green', 'purple')[i]})" for i, name in enumerate(series)
    )
    caption = f"\n\n{title}: {y_label} {min(lo):.3g}–{max(hi):.3g} against {x_label}; {legend}"
    for points in (40, 30, 22, 16, 12, 8, 5):
        md = f"![{title}](data:image/svg+xml,{quote(_svg(series, points), safe=':/=,')})"
        if len(md) + len(caption) < INLINE_LIMIT:
            return md + caption
    raise ValueError(f"{title}: {len(series)} series do not fit an inline plot")
