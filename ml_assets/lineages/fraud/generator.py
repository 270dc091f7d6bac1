"""The card-transaction dataset: its columns and a seeded, deterministic generator.

The fraud lineage's YAML names `generate_transactions` as its dataset generator, called as
`generate_transactions(rows, seed)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

# The columns this generator writes. Their types and ranges are declared once, in the lineage's
# defs.yaml (tests check the generated frame against it).
LABEL = "is_fraud"
CATEGORICAL = ("merchant_category",)
NUMERIC = (
    "amount",
    "hour",
    "card_present",
    "device_mismatch",
    "country_mismatch",
    "txn_count_1h",
    "txn_count_24h",
    "account_age_days",
    "distance_from_home_km",
)
FEATURES = CATEGORICAL + NUMERIC

# The generated file: an id, the features, the label.
COLUMNS = ("transaction_id", *FEATURES, LABEL)

# A suspicious-looking transaction (online, at 3 am, far from home, a 12-day-old account): what
# the serving tests and the serving benchmark send to /v1/score.
SMOKE_TRANSACTION = {
    "merchant_category": "online_retail",
    "amount": 912.5,
    "hour": 3,
    "card_present": 0,
    "device_mismatch": 1,
    "country_mismatch": 1,
    "txn_count_1h": 6,
    "txn_count_24h": 14,
    "account_age_days": 12,
    "distance_from_home_km": 4_200.0,
}

# (name, share of transactions, typical amount, fraud risk added to the logit)
MERCHANTS: tuple[tuple[str, float, float, float], ...] = (
    ("grocery", 0.22, 45.0, -0.9),
    ("fuel", 0.12, 55.0, -0.4),
    ("restaurants", 0.14, 38.0, -0.7),
    ("pharmacy", 0.06, 30.0, -0.8),
    ("utilities", 0.05, 110.0, -1.0),
    ("online_retail", 0.15, 80.0, 0.5),
    ("travel", 0.05, 420.0, 0.4),
    ("electronics", 0.06, 310.0, 0.9),
    ("gaming", 0.04, 40.0, 0.8),
    ("jewelry", 0.02, 650.0, 1.1),
    ("gift_cards", 0.03, 100.0, 1.5),
    ("atm_withdrawal", 0.06, 160.0, 0.6),
)
MERCHANT_NAMES = tuple(m[0] for m in MERCHANTS)


def _features(rng: np.random.Generator, start_id: int, n: int) -> pd.DataFrame:
    shares = np.array([m[1] for m in MERCHANTS])
    cat_idx = rng.choice(len(MERCHANTS), size=n, p=shares / shares.sum())
    typical = np.array([m[2] for m in MERCHANTS])[cat_idx]
    amount = np.round(np.clip(typical * rng.lognormal(0.0, 0.8, n), 0.5, 25_000.0), 2)
    # Daytime-heavy hour distribution.
    hour_w = np.array(
        [
            1,
            0.6,
            0.4,
            0.3,
            0.3,
            0.5,
            1.2,
            2.5,
            3.5,
            4,
            4.2,
            4.5,
            5,
            4.8,
            4.5,
            4.4,
            4.6,
            5,
            5.2,
            4.8,
            4,
            3,
            2.2,
            1.5,
        ]
    )
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    online = np.isin(cat_idx, [5, 7, 8, 10])
    card_present = (rng.random(n) > np.where(online, 0.92, 0.15)).astype(np.int64)
    device_mismatch = (rng.random(n) < np.where(card_present == 1, 0.01, 0.06)).astype(np.int64)
    country_mismatch = (rng.random(n) < 0.035).astype(np.int64)
    txn_1h = rng.poisson(0.6, n).astype(np.int64)
    txn_24h = (txn_1h + rng.poisson(3.0, n)).astype(np.int64)
    account_age = np.clip(rng.gamma(2.0, 500.0, n), 0, 19_000).astype(np.int64)
    distance = np.round(np.clip(rng.lognormal(2.0, 1.2, n), 0.0, 19_000.0), 1)
    return pd.DataFrame(
        {
            "transaction_id": np.arange(start_id, start_id + n, dtype=np.int64),
            "merchant_category": np.array(MERCHANT_NAMES, dtype=object)[cat_idx],
            "amount": amount,
            "hour": hour.astype(np.int64),
            "card_present": card_present,
            "device_mismatch": device_mismatch,
            "country_mismatch": country_mismatch,
            "txn_count_1h": txn_1h,
            "txn_count_24h": txn_24h,
            "account_age_days": account_age,
            "distance_from_home_km": distance,
        }
    )


def _fraud_logit(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    risk = dict(zip(MERCHANT_NAMES, (m[3] for m in MERCHANTS), strict=True))
    night = df["hour"].isin([0, 1, 2, 3, 4, 5]).to_numpy()
    typical = dict(zip(MERCHANT_NAMES, (m[2] for m in MERCHANTS), strict=True))
    amount_ratio = np.log(df["amount"].to_numpy() / df["merchant_category"].map(typical).to_numpy())
    logit = (
        df["merchant_category"].map(risk).to_numpy()
        + 0.9 * np.clip(amount_ratio, -1.0, 3.0)
        + 1.1 * night
        + 1.6 * df["device_mismatch"].to_numpy()
        + 1.4 * df["country_mismatch"].to_numpy()
        - 0.8 * df["card_present"].to_numpy()
        + 0.55 * np.clip(df["txn_count_1h"].to_numpy() - 1, 0, 6)
        - 0.5 * np.log1p(df["account_age_days"].to_numpy() / 30.0)
        + 0.35 * np.log1p(df["distance_from_home_km"].to_numpy() / 50.0)
    )
    # The scale sets how learnable the signal is (a Bayes-optimal ROC-AUC of about 0.97 and
    # PR-AUC of about 0.46 at 1.5% fraud); the noise keeps it far from separable.
    return 2.0 * (logit + rng.normal(0.0, 0.6, len(df)))


def _intercept_for_rate(logit: np.ndarray, u: np.ndarray, rate: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        p = 1.0 / (1.0 + np.exp(-(logit + mid)))
        if (u < p).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def generate_transactions(
    rows: int,
    seed: int,
    fraud_rate: float = 0.015,
    chunk_rows: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Generate `rows` transactions; equal (rows, seed, fraud_rate) give an equal frame."""
    if rows < 100:
        raise ValueError(f"rows must be at least 100 to hold both classes, got {rows}")
    if not 0.001 <= fraud_rate <= 0.2:
        raise ValueError(f"fraud_rate must be within [0.001, 0.2], got {fraud_rate}")
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - start)
        parts.append(_features(rng, start + 1, n))
        if progress is not None:
            progress(start + n, rows)
    df = pd.concat(parts, ignore_index=True)
    logit = _fraud_logit(df, rng)
    u = rng.random(len(df))
    intercept = _intercept_for_rate(logit, u, fraud_rate)
    df[LABEL] = (u < 1.0 / (1.0 + np.exp(-(logit + intercept)))).astype(np.int64)
    return df
