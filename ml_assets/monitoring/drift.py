"""Drift of a day's logged inputs against the training split a production version learnt from:
PSI per feature (training-quantile bins for numbers, one bin per category plus one for values
never seen in training), a two-sample KS test for numeric features (scipy.stats.ks_2samp), and
the prediction distribution. Pure functions: the asset (and its check) decide what to do.

scipy, not Evidently: the statistics are a few lines each on top of scipy's KS, and Evidently
0.7 would bring its own pandas/pydantic pins and a report format we would translate anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ml_assets.platform.lineage_spec import FeatureSpec, MonitoringSpec

BINS = 10
EPS = 1e-4  # floor of a bin's share: an empty bin on one side must not make PSI infinite
UNSEEN = "__unseen__"
NOT_ENOUGH_TRAFFIC = "not enough traffic"


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms (counts or shares) over the same bins."""
    e = np.maximum(expected / max(expected.sum(), 1), EPS)
    a = np.maximum(actual / max(actual.sum(), 1), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_bins(reference: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), open at both ends."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(edges)


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    psi: float | None
    level: str  # "ok", "warn", "fail", or "not compared" (a sensitive feature: only hashes)
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    live_mean: float | None = None
    training_mean: float | None = None
    shares: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> both sides
    unseen_share: float | None = None


def _level(value: float, limits: MonitoringSpec) -> str:
    if value > limits.psi_fail:
        return "fail"
    return "warn" if value > limits.psi_warn else "ok"


def feature_drift(
    f: FeatureSpec, training: pd.Series, live: pd.Series, limits: MonitoringSpec
) -> FeatureDrift:
    """One feature's drift between its training values and the day's logged values."""
    if f.sensitive:  # the log holds sha256s of the values: nothing to compare them with
        return FeatureDrift(f.name, f.kind, None, "not compared")
    if f.kind == "category":
        ref = training.astype(str).value_counts()
        seen = live.astype(str).where(live.astype(str).isin(ref.index), UNSEEN).value_counts()
        cats = [*ref.index, UNSEEN]
        e = np.array([ref.get(c, 0) for c in cats], dtype=float)
        a = np.array([seen.get(c, 0) for c in cats], dtype=float)
        value = psi(e, a)
        shares = {
            c: {"training": e[i] / e.sum(), "live": a[i] / a.sum()} for i, c in enumerate(cats)
        }
        return FeatureDrift(
            f.name, f.kind, value, _level(value, limits), shares=shares,
            unseen_share=float(a[-1] / a.sum()),
        )  # fmt: skip
    ref_values = training.to_numpy(dtype=float)
    live_values = live.to_numpy(dtype=float)
    edges = numeric_bins(ref_values)
    value = psi(_counts(ref_values, edges).astype(float), _counts(live_values, edges).astype(float))
    ks = stats.ks_2samp(ref_values, live_values)
    return FeatureDrift(
        f.name,
        f.kind,
        value,
        _level(value, limits),
        ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
        live_mean=float(live_values.mean()),
        training_mean=float(ref_values.mean()),
    )


def prediction_summary(outputs: np.ndarray) -> dict[str, float]:
    q = np.quantile(outputs, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "mean": float(outputs.mean()),
        **{f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95), q, strict=True)},
    }


def drift_report(
    features: tuple[FeatureSpec, ...],
    training: pd.DataFrame,
    live: pd.DataFrame,
    outputs: np.ndarray,
    limits: MonitoringSpec,
    training_outputs: np.ndarray | None = None,
) -> dict[str, Any]:
    """The day's drift: {"status": "ok"|"warn"|"fail"|NOT_ENOUGH_TRAFFIC, "failed": [...],
    "features": {...}, "predictions": {...}, "thresholds": {...}, "rows": n}."""
    thresholds = {
        "psi_warn": limits.psi_warn,
        "psi_fail": limits.psi_fail,
        "min_rows": limits.min_rows,
    }
    base = {"rows": int(len(live)), "thresholds": thresholds, "training_rows": int(len(training))}
    if len(live) < limits.min_rows:
        return {**base, "status": NOT_ENOUGH_TRAFFIC, "failed": [], "warned": [], "features": {}}
    per = {f.name: feature_drift(f, training[f.name], live[f.name], limits) for f in features}
    failed = sorted(n for n, d in per.items() if d.level == "fail")
    warned = sorted(n for n, d in per.items() if d.level == "warn")
    predictions: dict[str, Any] = {"live": prediction_summary(outputs)}
    if training_outputs is not None:
        edges = numeric_bins(training_outputs)
        predictions["training"] = prediction_summary(training_outputs)
        predictions["psi"] = psi(
            _counts(training_outputs, edges).astype(float), _counts(outputs, edges).astype(float)
        )
    return {
        **base,
        "status": "fail" if failed else "warn" if warned else "ok",
        "failed": failed,
        "warned": warned,
        "features": {n: asdict(d) for n, d in per.items()},
        "predictions": predictions,
    }
