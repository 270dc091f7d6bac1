"""Dagster-free logic shared by the assets and the serving layer (hashing, data, scoring)."""
