"""Forward-curve points with a learnable, noisy next settlement (seeded, deterministic).

Each row is one delivery period of one commodity's forward curve on one trading day: its recent
settlements, tenor, delivery month and season, time to expiry and implied volatility. The next
settlement mean-reverts toward a seasonal, tenor-dependent fair value and keeps part of the
recent trend; the rest is noise scaled by the volatility. Prices are quoted to the cent, as
exchanges settle them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# (commodity, share of rows, price level, seasonal amplitude, contango per year, base volatility)
COMMODITIES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("power", 0.30, 62.0, 0.22, 0.01, 0.45),
    ("gas", 0.25, 28.0, 0.30, 0.02, 0.50),
    ("crude", 0.20, 78.0, 0.03, 0.015, 0.30),
    ("coal", 0.15, 115.0, 0.08, 0.005, 0.35),
    ("carbon", 0.10, 71.0, 0.02, 0.03, 0.40),
)
SEASONS = ("winter", "spring", "summer", "autumn")
_SEASON_OF_MONTH = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])  # Dec, Jan, Feb = winter


def _cents(prices: np.ndarray) -> np.ndarray:
    return np.round(np.clip(prices, 0.01, None), 2)


def forward_curves(rows: int, seed: int) -> pd.DataFrame:
    """`rows` forward-curve points from `seed`; the target is `next_settlement`."""
    rng = np.random.default_rng(seed)
    shares = np.array([c[1] for c in COMMODITIES])
    idx = rng.choice(len(COMMODITIES), size=rows, p=shares / shares.sum())
    level, season_amp, contango, base_vol = (
        np.array([c[k] for c in COMMODITIES])[idx] for k in (2, 3, 4, 5)
    )
    tenor = rng.integers(1, 37, size=rows)
    month = rng.integers(1, 13, size=rows)
    days_to_expiry = np.clip(tenor * 30 - rng.integers(0, 30, size=rows), 1, None)
    # Winter peaks for power and gas; the phase is the same for every commodity.
    seasonal = season_amp * np.cos(2 * np.pi * (month - 1) / 12)
    fair = level * (1 + seasonal) * (1 + contango * tenor / 12)
    volatility = np.round(base_vol * rng.lognormal(0.0, 0.25, rows) / np.sqrt(1 + tenor / 24), 4)
    current = fair * np.exp(rng.normal(0.0, 0.10, rows))
    trend = rng.normal(0.0, 0.02, rows)
    daily = volatility / np.sqrt(252)
    lag1 = current
    lag5 = current * np.exp(-2.0 * trend + rng.normal(0.0, 0.5 * daily))
    lag20 = current * np.exp(-8.0 * trend + rng.normal(0.0, daily))
    # Half the gap to fair value closes by the next settlement, and the trend carries on.
    drift = 0.5 * np.log(fair / current) + trend
    nxt = current * np.exp(drift + rng.normal(0.0, daily))
    return pd.DataFrame(
        {
            "curve_point_id": np.arange(rows, dtype=np.int64),
            "commodity": np.array([c[0] for c in COMMODITIES], dtype=object)[idx],
            "season": np.array(SEASONS, dtype=object)[_SEASON_OF_MONTH[month - 1]],
            "month": month.astype(np.int64),
            "tenor_months": tenor.astype(np.int64),
            "days_to_expiry": days_to_expiry.astype(np.int64),
            "volatility": volatility,
            "settle_lag1": _cents(lag1),
            "settle_lag5_mean": _cents(lag5),
            "settle_lag20_mean": _cents(lag20),
            "next_settlement": _cents(nxt),
        }
    )
