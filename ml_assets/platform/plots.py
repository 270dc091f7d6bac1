"""Small PNG plots for asset metadata and reports (matplotlib, headless)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def _png(
    fig: plt.Figure,
    ax: plt.Axes,
    title: str,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    grid_axis: str = "both",
    legend: bool = True,
) -> bytes:
    """Label, grid and title the axes, then the figure as PNG bytes (and close it)."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis=grid_axis)
    if legend:
        ax.legend()
    ax.set_title(title)
    buf = io.BytesIO()
    # Fixed metadata keeps the PNG bytes reproducible (matplotlib stamps its version otherwise).
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def md_image(png: bytes, alt: str) -> str:
    """Markdown that the Dagster UI renders inline."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def learning_curve_png(
    iterations: Sequence[int], train: Sequence[float], valid: Sequence[float]
) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(iterations, train, marker="o", label="train PR-AUC")
    ax.plot(iterations, valid, marker="o", label="valid PR-AUC")
    return _png(fig, ax, "Learning curve", xlabel="boosting iterations", ylabel="PR-AUC")


def pr_curves_png(y_true: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, proba in curves.items():
        precision, recall, _ = precision_recall_curve(y_true, proba)
        ax.plot(recall, precision, label=name, alpha=0.8)
    ax.axhline(float(np.mean(y_true)), color="grey", linestyle=":", label="base rate")
    return _png(fig, ax, "Precision-recall on the test split", xlabel="recall", ylabel="precision")


def latency_png(samples_ms: dict[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot(list(samples_ms.values()), showfliers=False)
    ax.set_xticks(range(1, len(samples_ms) + 1), list(samples_ms.keys()))
    ax.set_yscale("log")
    return _png(
        fig,
        ax,
        "Single-row scoring latency",
        ylabel="single-row latency (ms, log)",
        grid_axis="y",
        legend=False,
    )


def mode_bars_png(rows: list[dict[str, float | str]], metrics: Sequence[str]) -> bytes:
    """Grouped bars: one group per metric, one bar per search mode."""
    modes = [str(r["mode"]) for r in rows]
    x = np.arange(len(metrics))
    width = 0.8 / max(len(modes), 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, row in enumerate(rows):
        ax.bar(x + i * width, [float(row[m]) for m in metrics], width, label=modes[i])
    ax.set_xticks(x + width * (len(modes) - 1) / 2, list(metrics))
    ax.set_ylim(0, 1)
    return _png(fig, ax, "Search quality on the held-out (eval) queries", grid_axis="y")
