"""The card-transaction schema: columns, types and ranges (no pandas: serving imports this)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "float" or "str"
    min: float | None = None
    max: float | None = None


SCHEMA: tuple[Column, ...] = (
    Column("transaction_id", "int", 0, None),
    Column("merchant_category", "str"),
    Column("amount", "float", 0.01, 50_000.0),
    Column("hour", "int", 0, 23),
    Column("card_present", "int", 0, 1),
    Column("device_mismatch", "int", 0, 1),
    Column("country_mismatch", "int", 0, 1),
    Column("txn_count_1h", "int", 0, 200),
    Column("txn_count_24h", "int", 0, 1_000),
    Column("account_age_days", "int", 0, 20_000),
    Column("distance_from_home_km", "float", 0.0, 20_100.0),
    Column(LABEL, "int", 0, 1),
)
COLUMNS = tuple(c.name for c in SCHEMA)
# Plausible fraud rates for card data; outside these a file is mislabelled or not this dataset.
LABEL_RATE_BOUNDS = (0.001, 0.2)
