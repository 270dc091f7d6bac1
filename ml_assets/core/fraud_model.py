"""Training, deterministic serialisation and ONNX export of the fraud model (no Dagster here)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from ml_assets.core.fraud_data import CATEGORICAL, FEATURES, LABEL, NUMERIC
from ml_assets.core.hashing import canonical_skops

ONNX_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# Types skops does not trust by default that this pipeline needs. TreePredictor indexes its
# node array without bounds checks, so a crafted file could read out of bounds: we only ever
# load our own files, and only after their sha256 matched (ArtifactRef.read_verified).
SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


@dataclass(frozen=True)
class TrainParams:
    max_iter: int = 150
    learning_rate: float = 0.06
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 80
    l2_regularization: float = 1.0
    step_iters: int = 25


@dataclass(frozen=True)
class CurvePoint:
    iteration: int
    train_pr_auc: float
    valid_pr_auc: float
    valid_roc_auc: float


def build_pipeline(params: TrainParams, seed: int) -> Pipeline:
    features = ColumnTransformer(
        [
            (
                "category",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(CATEGORICAL),
            ),
            ("numeric", "passthrough", list(NUMERIC)),
        ]
    )
    clf = HistGradientBoostingClassifier(
        max_iter=params.step_iters,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=False,
        warm_start=True,
        random_state=seed,
    )
    return Pipeline([("features", features), ("clf", clf)])


def train(
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    params: TrainParams,
    seed: int,
    progress: Callable[[CurvePoint], None] | None = None,
) -> tuple[Pipeline, list[CurvePoint]]:
    """Fit in warm-started steps so each step's validation score forms a learning curve."""
    if train_df[LABEL].nunique() < 2:
        raise ValueError("the training split holds a single class; a classifier cannot be fit")
    pipe = build_pipeline(params, seed)
    x_train, y_train = train_df[list(FEATURES)], train_df[LABEL].to_numpy()
    x_valid, y_valid = valid_df[list(FEATURES)], valid_df[LABEL].to_numpy()
    pipe.fit(x_train, y_train)
    clf: HistGradientBoostingClassifier = pipe.named_steps["clf"]
    enc = pipe.named_steps["features"]
    xt_train, xt_valid = enc.transform(x_train), enc.transform(x_valid)
    curve: list[CurvePoint] = []
    iters = params.step_iters
    while True:
        p_train = clf.predict_proba(xt_train)[:, 1]
        p_valid = clf.predict_proba(xt_valid)[:, 1]
        point = CurvePoint(
            iteration=iters,
            train_pr_auc=float(average_precision_score(y_train, p_train)),
            valid_pr_auc=float(average_precision_score(y_valid, p_valid)),
            valid_roc_auc=float(roc_auc_score(y_valid, p_valid)),
        )
        curve.append(point)
        if progress is not None:
            progress(point)
        if iters >= params.max_iter:
            break
        iters = min(iters + params.step_iters, params.max_iter)
        clf.set_params(max_iter=iters)
        clf.fit(xt_train, y_train)
    return pipe, curve


def quality(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
    }


def to_skops_bytes(model: Pipeline) -> bytes:
    """skops (no pickle), re-zipped with fixed timestamps so equal models give equal bytes."""
    import skops.io as sio

    return canonical_skops(sio.dumps(model))


def from_skops_bytes(data: bytes) -> Pipeline:
    """Load verified skops bytes; types outside the reviewed list are refused."""
    import skops.io as sio

    refused = sorted(set(sio.get_untrusted_types(data=data)) - set(SKOPS_TRUSTED_TYPES))
    if refused:
        raise ValueError(f"refusing to load a model with unreviewed types: {refused}")
    return sio.loads(data, trusted=SKOPS_TRUSTED_TYPES)


def to_onnx_bytes(model: Pipeline) -> bytes:
    """Export with one named input per feature column and a plain probability tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [(c, StringTensorType([None, 1])) for c in CATEGORICAL] + [
        (c, FloatTensorType([None, 1])) for c in NUMERIC
    ]
    onx = convert_sklearn(
        model,
        name="fraud-detector",
        initial_types=initial_types,
        target_opset=ONNX_TARGET_OPSET,
        options={id(model.named_steps["clf"]): {"zipmap": False}},
    )
    buf = io.BytesIO()
    buf.write(onx.SerializeToString(deterministic=True))
    return buf.getvalue()
