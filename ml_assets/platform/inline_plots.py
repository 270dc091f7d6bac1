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
COLOR_NAMES = ("blue", "red", "green", "purple")
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
    legend = ", ".join(f"{name} ({COLOR_NAMES[i]})" for i, name in enumerate(series))
    caption = f"\n\n{title}: {y_label} {min(lo):.3g}–{max(hi):.3g} against {x_label}; {legend}"
    for points in (40, 30, 22, 16, 12, 8, 5):
        md = f"![{title}](data:image/svg+xml,{quote(_svg(series, points), safe=':/=,')})"
        if len(md) + len(caption) < INLINE_LIMIT:
            return md + caption
    raise ValueError(f"{title}: {len(series)} series do not fit an inline plot")


def _fits(title: str, svg: str, caption: str) -> str:
    md = f"![{title}](data:image/svg+xml,{quote(svg, safe=':/=,')})"
    if len(md) + len(caption) >= INLINE_LIMIT:
        raise ValueError(f"{title}: {len(md) + len(caption)} characters do not fit inline")
    return md + caption


def inline_bars(title: str, groups: Mapping[str, Mapping[str, float]], y_label: str) -> str:
    """Markdown: grouped bars (one group per key of `groups`, one bar per series in it, colours
    in order, from 0 to the largest value) and a caption with every value, under the UI's
    inline limit."""
    names = list(next(iter(groups.values()), {}))
    if not groups or not 0 < len(names) <= len(COLORS):
        raise ValueError(f"{title}: grouped bars need 1 to {len(COLORS)} series in each group")
    if any(list(g) != names for g in groups.values()):
        raise ValueError(f"{title}: every group must have the series {names}, in that order")
    values = [v for g in groups.values() for v in g.values()]
    if min(values) < 0:
        raise ValueError(f"{title}: bars start at 0, and {min(values)} is negative")
    top, base = max(values) or 1.0, H - 12  # room under the axis for the group names
    slot = (W - 2 * PAD) / len(groups)
    bar = slot * 0.8 / len(names)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {H}' width='{W * 2}'>",
        f"<path d='M{PAD},{base}H{W - PAD}' stroke='#999'/>",
    ]
    for i, (color, name) in enumerate(zip(COLORS, names, strict=False)):
        d = "".join(
            f"M{round(PAD + g * slot + slot * 0.1 + i * bar)},{base}"
            f"v{-round(group[name] / top * (base - PAD))}h{max(round(bar), 1)}V{base}z"
            for g, group in enumerate(groups.values())
        )
        parts.append(f"<path d='{d}' fill='{color}'/>")
    labels = "".join(
        f"<text x='{round(PAD + (g + 0.5) * slot)}' y='{H - 2}'>{name}</text>"
        for g, name in enumerate(groups)
    )
    parts.append(f"<g font-size='9' text-anchor='middle'>{labels}</g></svg>")
    legend = ", ".join(f"{n} ({COLOR_NAMES[i]})" for i, n in enumerate(names))
    figures = "; ".join(
        f"{g}: " + ", ".join(f"{n} {v:.3f}" for n, v in group.items())
        for g, group in groups.items()
    )
    caption = f"\n\n{title}: {y_label} per {', '.join(groups)}; {legend}"
    # Every value in the caption while it fits, the bars alone beyond that.
    try:
        return _fits(title, "".join(parts), f"{caption}. {figures}")
    except ValueError:
        return _fits(title, "".join(parts), caption)


VERDICT_COLORS = {True: "#2ca02c", False: "#d62728", None: "#ccc"}


def _grid(rows: Mapping[str, Sequence[bool | None]], labels: bool) -> str:
    """Cells as runs of one colour: a stroke as tall as the row, one segment per run."""
    n, left = max(len(v) for v in rows.values()), 44 if labels else 0
    cell, row_h = (W - left) / n, min(16, H / len(rows))
    paths: dict[bool | None, list[str]] = {k: [] for k in VERDICT_COLORS}
    for r, cells in enumerate(rows.values()):
        y, start = round((r + 0.5) * row_h), 0
        for i in range(1, len(cells) + 1):
            if i == len(cells) or cells[i] != cells[start]:
                x0, x1 = round(left + start * cell), round(left + i * cell) - 1
                paths[cells[start]].append(f"M{x0},{y}H{x1}")
                start = i
    height = round(len(rows) * row_h)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {height}' width='{W * 2}'>"]
    parts += [
        f"<path d='{''.join(d)}' stroke='{VERDICT_COLORS[k]}' stroke-width='{round(row_h) - 2}'/>"
        for k, d in paths.items()
        if d
    ]
    if labels:
        text = "".join(
            f"<text x='0' y='{round((r + 0.5) * row_h) + 3}'>{name[:9]}</text>"
            for r, name in enumerate(rows)
        )
        parts.append(f"<g font-size='9'>{text}</g>")
    parts.append("</svg>")
    return "".join(parts)


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


def inline_verdicts(
    title: str, rows: Mapping[str, Sequence[bool | None]], first: str, last: str
) -> str:
    """Markdown: a strip of verdicts, one row per check and one column per night (green
    passed, red failed, grey no verdict), and a caption with each row's count, under the UI's
    inline limit; the oldest columns are dropped (and the caption says so) until it fits."""
    lengths = {len(v) for v in rows.values()}
    if not rows or len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"{title}: every row needs the same number (> 0) of verdicts")
    counts = ", ".join(
        f"{name} {sum(v is True for v in cells)}/{sum(v is not None for v in cells)}"
        for name, cells in rows.items()
    )
    caption = (
        f"\n\n{title}: {first} to {last}, rows top to bottom {counts} passed; "
        "green passed, red failed, grey no verdict"
    )
    for keep in range(lengths.pop(), 0, -1):
        kept = {name: list(cells)[-keep:] for name, cells in rows.items()}
        for labels in (True, False):
            try:
                shown = "" if keep == len(next(iter(rows.values()))) else f" (last {keep} drawn)"
                return _fits(title, _grid(kept, labels), caption + shown)
            except ValueError:
                continue
    raise ValueError(f"{title}: {len(rows)} rows do not fit an inline plot")


def inline_threshold_bars(
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
