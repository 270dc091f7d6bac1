"""The fraud detector's estimator: one-hot merchant category + gradient-boosted trees (seeded)."""

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def make_model(
    categorical: list[str],
    numeric: list[str],
    seed: int,
    max_iter: int = 150,
    learning_rate: float = 0.06,
    max_leaf_nodes: int = 15,
    min_samples_leaf: int = 80,
    l2_regularization: float = 1.0,
) -> Pipeline:
    features = ColumnTransformer(
        [
            ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("numeric", "passthrough", numeric),
        ]
    )
    clf = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        min_samples_leaf=min_samples_leaf,
        l2_regularization=l2_regularization,
        early_stopping=False,
        random_state=seed,
    )
    return Pipeline([("features", features), ("clf", clf)])
