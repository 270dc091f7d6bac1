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


BAR_COLORS = ("steelblue", "orange", "red")  # under every line, over one, over two or more
LINE_COLORS = ("orange", "red")  # the reference lines, lowest first


def _bars_svg(bars: Sequence[tuple[str, float]], lines: Sequence[float], top: float) -> str:
    slot = (W - 2 * PAD) / len(bars)
    width = max(1, round(slot * 0.7))

    def y(v: float) -> int:
        return round(H - PAD - v / top * (H - 2 * PAD))

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='{W * 2}'>"]
    for level, color in enumerate(BAR_COLORS):
        # One path per colour, a vertical stroke per bar (commas cost one character encoded).
        strokes = "".join(
            f"M{round(PAD + slot * (i + 0.5))},{H - PAD}V{y(v)}"
            for i, (_, v) in enumerate(bars)
            if min(sum(v > line for line in lines), len(BAR_COLORS) - 1) == level
        )
        if strokes:
            parts.append(f"<path d='{strokes}' stroke='{color}' stroke-width='{width}'/>")
    for line, color in zip(sorted(lines), LINE_COLORS, strict=False):
        parts.append(
            f"<path d='M{PAD},{y(line)}H{W - PAD}' stroke='{color}' stroke-dasharray='4'/>"
        )
    parts.append("</svg>")
    return "".join(parts)


def inline_bars(
    title: str, bars: Mapping[str, float], lines: Mapping[str, float], y_label: str
) -> str:
    """Markdown: a bar chart, largest bar first, with dashed reference lines (one or two, e.g.
    warn and fail) and a caption naming each bar, under the UI's inline limit. A bar is blue
    under every line, orange over one and red over two; when not every bar fits, the largest
    do and the caption says how many of how many."""
    if not bars:
        raise ValueError(f"{title}: a bar chart needs at least one bar")
    if not 0 < len(lines) <= len(LINE_COLORS):
        raise ValueError(f"{title}: 1 to {len(LINE_COLORS)} reference lines, not {len(lines)}")
    ranked = sorted(bars.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max(ranked[0][1], *lines.values()) * 1.1 or 1.0
    marks = ", ".join(
        f"{name} {value:.3g} ({color})"
        for (name, value), color in zip(
            sorted(lines.items(), key=lambda kv: kv[1]), LINE_COLORS, strict=False
        )
    )
    for shown in sorted({len(ranked), *(n for n in (16, 12, 8, 5, 3) if n < len(ranked))})[::-1]:
        head = ranked[:shown]
        svg = _bars_svg(head, sorted(lines.values()), top)
        md = f"![{title}](data:image/svg+xml,{quote(svg, safe=':/=,')})"
        part = "" if shown == len(ranked) else f" (the largest {shown} of {len(ranked)})"
        for digits in (3, 2):
            named = ", ".join(f"{n} {v:.{digits}g}" for n, v in head)
            caption = (
                f"\n\n{title}: {y_label} by bar{part}, left to right: {named}; dashed: {marks}"
            )
            if len(md) + len(caption) < INLINE_LIMIT:
                return md + caption
    raise ValueError(f"{title}: {len(ranked)} bars do not fit an inline plot")
