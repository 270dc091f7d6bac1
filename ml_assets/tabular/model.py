"""Fit, measure, serialise and export a declared lineage's scikit-learn model (no Dagster here).

The estimator comes from the lineage's own train function; everything that must be the same for
every lineage (metrics, deterministic skops bytes, the ONNX signature) is here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ml_assets.platform.hashing import canonical_skops
from ml_assets.platform.lineage_spec import FeatureSpec, Task
from ml_assets.platform.onnx_bytes import canonical_onnx

ONNX_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "pr_auc"),
    "regression": ("mae", "rmse"),
}
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "mae": False, "rmse": False}


def check_estimator(estimator: object, task: Task, source: str) -> BaseEstimator:
    """Refuse anything but an unfitted scikit-learn estimator of the lineage's task."""
    if not isinstance(estimator, BaseEstimator) or not hasattr(estimator, "fit"):
        raise TypeError(
            f"{source} returned {type(estimator).__name__}; it must return an unfitted "
            "scikit-learn estimator or Pipeline"
        )
    if task == "classification" and not is_classifier(estimator):
        raise TypeError(f"{source} returned a {type(estimator).__name__}, not a classifier")
    if task == "regression" and not is_regressor(estimator):
        raise TypeError(f"{source} returned a {type(estimator).__name__}, not a regressor")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return estimator
    raise TypeError(
        f"{source} returned a fitted estimator; return it unfitted, the lineage fits it on its "
        "own training split so the model's provenance is that split"
    )


@contextlib.contextmanager
def native_threads(threads: int | None) -> Iterator[None]:
    """Cap OpenMP/BLAS threads while scikit-learn fits or predicts (None: no cap).

    On a small shared machine, OpenMP's busy-waiting threads can make a fit 30x slower.
    """
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def select_features(estimator: Any, features: Sequence[FeatureSpec]) -> Any:
    """Put a by-name column selector in front of an estimator that has none.

    The ONNX graph has one named input per feature, and skl2onnx routes named inputs only
    through a ColumnTransformer; with numeric features only, a bare estimator (or a Pipeline
    such as scaler + model) gets a passthrough selector in the declared order. Category
    features need an encoder the train function chooses, so those estimators are left as-is.
    """
    from sklearn.compose import ColumnTransformer

    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(first, ColumnTransformer) or any(f.kind == "category" for f in features):
        return estimator
    selector = ColumnTransformer([("numeric", "passthrough", [f.name for f in features])])
    return Pipeline([("features", selector), ("model", estimator)])


def predict(model: Any, task: Task, frame: pd.DataFrame) -> np.ndarray:
    """P(class 1) for classification, the predicted value for regression."""
    if task == "classification":
        return np.asarray(model.predict_proba(frame))[:, 1]
    return np.asarray(model.predict(frame), dtype=np.float64).reshape(-1)


def quality(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC of P(class 1)."""
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
    }


def evaluate(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The task's metrics (TASK_METRICS) of one set of predictions."""
    if task == "classification":
        return quality(y_true, y_pred)
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
    }


def to_skops_bytes(model: Any) -> tuple[bytes, list[str]]:
    """Canonical skops bytes and the types skops does not trust by default that they hold.

    The lineage records those types next to the bytes' sha256 when it writes them; a load
    trusts exactly that list, and only for bytes whose sha256 still matches.
    """
    import skops.io as sio

    data = canonical_skops(sio.dumps(model))
    return data, sorted(sio.get_untrusted_types(data=data))


def from_skops_bytes(data: bytes, trusted: Sequence[str]) -> Any:
    """Load verified skops bytes; types outside the list recorded at write time are refused."""
    import skops.io as sio

    refused = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
    if refused:
        raise ValueError(f"refusing to load a model with unrecorded types: {refused}")
    return sio.loads(data, trusted=list(trusted))


def _final_estimator(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def to_onnx_bytes(model: Any, features: Sequence[FeatureSpec], task: Task, name: str) -> bytes:
    """One named input per feature (category: string, numeric: float32), plain outputs."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [
        (
            f.name,
            StringTensorType([None, 1]) if f.kind == "category" else FloatTensorType([None, 1]),
        )
        for f in features
    ]
    options = {id(_final_estimator(model)): {"zipmap": False}} if task == "classification" else {}
    try:
        onx = convert_sklearn(
            model,
            name=name,
            initial_types=initial_types,
            target_opset=ONNX_TARGET_OPSET,
            options=options,
        )
    except Exception as exc:
        raise ValueError(
            f"skl2onnx cannot convert this {type(model).__name__}: {exc}. Return a Pipeline whose "
            "first step is a ColumnTransformer selecting the features by name, with steps "
            "skl2onnx supports (https://onnx.ai/sklearn-onnx/supported.html)."
        ) from exc
    return canonical_onnx(onx)
