"""The curve forecaster's estimator: one-hot categories + gradient-boosted trees (seeded)."""

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def make_model(
    categorical: list[str], numeric: list[str], seed: int, max_iter: int, learning_rate: float
) -> Pipeline:
    features = ColumnTransformer(
        [
            ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("numeric", "passthrough", numeric),
        ]
    )
    model = HistGradientBoostingRegressor(
        max_iter=max_iter, learning_rate=learning_rate, early_stopping=False, random_state=seed
    )
    return Pipeline([("features", features), ("model", model)])
