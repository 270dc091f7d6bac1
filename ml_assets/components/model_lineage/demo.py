"""Small built-in datasets a scaffolded lineage starts from (replace with your own generator)."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ("north", "south", "east", "west")
# Declared in a scaffolded defs.yaml; keep in step with the generators below.
FEATURES = (
    {"name": "size_m2", "type": "float", "min": 10.0, "max": 400.0},
    {"name": "rooms", "type": "int", "min": 1, "max": 8},
    {"name": "region", "type": "category", "categories": list(REGIONS)},
)


def _features(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    size = np.round(np.clip(rng.lognormal(4.3, 0.45, rows), 10.0, 400.0), 1)
    rooms = np.clip(np.round(size / 30 + rng.normal(0, 0.8, rows)), 1, 8).astype(np.int64)
    region = np.array(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), rows)]
    return pd.DataFrame(
        {
            "row_id": np.arange(rows, dtype=np.int64),
            "size_m2": size,
            "rooms": rooms,
            "region": region,
        }
    )


def regression_rows(rows: int, seed: int) -> pd.DataFrame:
    """Flats: `price_k` (thousands) from size, rooms and region, plus noise."""
    rng = np.random.default_rng(seed)
    df = _features(rows, rng)
    premium = df["region"].map({"north": 1.3, "south": 0.9, "east": 1.0, "west": 1.1})
    price = 2.1 * df["size_m2"] * premium + 12 * df["rooms"] + rng.normal(0, 15, rows)
    return df.assign(price_k=np.round(price, 2))


def classification_rows(rows: int, seed: int) -> pd.DataFrame:
    """Flats: `sold_fast` (0/1), likelier for small flats in the north."""
    rng = np.random.default_rng(seed)
    df = _features(rows, rng)
    logit = 1.5 - 0.02 * df["size_m2"] + 0.8 * (df["region"] == "north") - 0.2 * df["rooms"]
    p = 1 / (1 + np.exp(-logit))
    return df.assign(sold_fast=(rng.random(rows) < p).astype(np.int64))
