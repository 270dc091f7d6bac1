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


def _png(fig: plt.Figure) -> bytes:
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
    ax.set_xlabel("boosting iterations")
    ax.set_ylabel("PR-AUC")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Learning curve")
    return _png(fig)


def pr_curves_png(y_true: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, proba in curves.items():
        precision, recall, _ = precision_recall_curve(y_true, proba)
        ax.plot(recall, precision, label=name, alpha=0.8)
    ax.axhline(float(np.mean(y_true)), color="grey", linestyle=":", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Precision-recall on the test split")
    return _png(fig)


def latency_png(samples_ms: dict[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot(list(samples_ms.values()), showfliers=False)
    ax.set_xticks(range(1, len(samples_ms) + 1), list(samples_ms.keys()))
    ax.set_yscale("log")
    ax.set_ylabel("single-row latency (ms, log)")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Single-row scoring latency")
    return _png(fig)


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
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    ax.set_title("Search quality on the held-out (eval) queries")
    return _png(fig)
